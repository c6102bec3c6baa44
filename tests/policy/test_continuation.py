"""Reopening a stopped job for a continue, and capturing an attempt lost with its machine, as store decisions:
a cancelled job stays cancelled, one continue holds a job at a time, the retry bound counts again from the
continue, auto-approval is off for it, and a lost attempt is captured once however many processes reconcile.

Every test runs on a SQLite file and on a real PostgreSQL database (``store_location``)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.core.errors import GuardRefusal
from tools.policy.records import HoldState, Lifecycle
from tools.policy.store import SpendStore

from .test_store import POLICY, bound, priced, start


@pytest.fixture
def store(store_location: Path | str) -> SpendStore:
    return SpendStore(store_location)


def dead_pid() -> int:
    """A pid whose process has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def stopped_job(store: SpendStore, job: str = "j1", max_retries: int = 3) -> None:
    """A job whose one attempt ran and ended, closed with its report."""
    est = priced(0.05)
    store.open_job(job, "t1", POLICY, max_retries=max_retries)
    _, grant = store.grant_by_policy(job, bound(est), est)
    ticket = start(store, job, grant.grant_id, bound(est))
    store.capture(ticket.attempt_id, 0.01, "interrupted")
    store.close(job, "ended interrupted; report written")


def test_a_closed_job_is_reopened_for_one_continue_with_auto_approval_off(store: SpendStore) -> None:
    stopped_job(store)
    job = store.reopen("j1", pid=os.getpid())
    assert job.lifecycle is Lifecycle.OPEN and not job.policy.allow_auto_approve and job.opened_attempts == 1
    cheap = priced(0.01)  # under the soft threshold: a fresh job would approve it by policy
    outcome, grant = store.grant_by_policy("j1", bound(cheap), cheap)
    assert grant is None and outcome.outcome == "needs_human"


def test_one_continue_at_a_time_and_a_dead_ones_claim_is_free(store: SpendStore) -> None:
    stopped_job(store)
    store.reopen("j1", pid=os.getpid())
    with pytest.raises(GuardRefusal, match="another continue holds it"):
        store.reopen("j1", pid=os.getpid())
    stopped_job(store, "j2")
    store.reopen("j2", pid=dead_pid())  # the continuing process died before it trained
    assert store.reopen("j2", pid=os.getpid()).claim.pid == os.getpid()


def test_a_cancelled_job_a_running_one_or_an_open_one_is_not_reopened(store: SpendStore) -> None:
    est = priced(3.0)
    store.open_job("cancelled", "t1", POLICY, max_retries=3)
    request = store.open_request("cancelled", bound(est), 3.0, "call-1", "{}")
    store.answer(request, answer_id="a" * 32, decision="cancel", decided_by="person:test", estimate=est)
    with pytest.raises(GuardRefusal, match="was cancelled"):
        store.reopen("cancelled", pid=os.getpid())
    cheap = priced(0.05)
    store.open_job("running", "t2", POLICY, max_retries=3)
    _, grant = store.grant_by_policy("running", bound(cheap), cheap)
    start(store, "running", grant.grant_id, bound(cheap))
    with pytest.raises(GuardRefusal, match="still running"):
        store.reopen("running", pid=os.getpid())
    store.open_job("open", "t3", POLICY, max_retries=3)
    with pytest.raises(GuardRefusal, match="is open"):
        store.reopen("open", pid=os.getpid())


def test_the_retry_bound_counts_again_from_the_continue(store: SpendStore) -> None:
    stopped_job(store, max_retries=0)
    store.reopen("j1", pid=os.getpid())
    est = priced(0.05)
    request = store.open_request("j1", bound(est), 0.05, "call-2", "{}")
    answered = store.answer(request, answer_id="b" * 32, decision="approve", decided_by="person:test", estimate=est)
    second = start(store, "j1", answered.grant.grant_id, bound(est))
    assert second.attempt == 2
    store.capture(second.attempt_id, 0.01, "failed")
    request = store.open_request("j1", bound(est), 0.05, "call-3", "{}")
    answered = store.answer(request, answer_id="c" * 32, decision="approve", decided_by="person:test", estimate=est)
    with pytest.raises(GuardRefusal, match="1 attempts already ran since it was continued and max_retries is 0"):
        start(store, "j1", answered.grant.grant_id, bound(est))


def _reconcile(location: str, attempt_id: str, out: multiprocessing.Queue) -> None:
    out.put(SpendStore(location).capture_lost(attempt_id, 0.02, "interrupted"))


def test_a_lost_attempt_is_captured_once_within_its_hold(store: SpendStore) -> None:
    est = priced(0.05)
    store.open_job("j1", "t1", POLICY, max_retries=3)
    _, grant = store.grant_by_policy("j1", bound(est), est)
    ticket = start(store, "j1", grant.grant_id, bound(est))
    [held] = store.held_here()
    assert held.attempt_id == ticket.attempt_id and held.price_usd_per_s > 0 and held.timeout_s > 0
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_reconcile, args=(str(store.path), ticket.attempt_id, out)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert sorted(out.get(timeout=5) for _ in procs) == [False, False, True]
    [row] = store.attempts(job_id="j1")
    assert row.state is HoldState.CAPTURED and row.captured_usd == pytest.approx(0.02)
    assert store.held_here() == [] and store.money("t1").held_usd == 0
    assert not store.capture_lost(ticket.attempt_id, 99.0, "interrupted")
    other = priced(0.05)
    _, grant = store.grant_by_policy("j1", bound(other), other)
    greedy = start(store, "j1", grant.grant_id, bound(other))
    assert store.capture_lost(greedy.attempt_id, 99.0, "interrupted")
    assert store.attempts(job_id="j1")[-1].captured_usd == pytest.approx(greedy.held_usd)  # never past its hold
