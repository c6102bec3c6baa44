"""Attempts lost with their machine: reconciled at the next start only when their owner and watchdog are both
gone, billed up to their last progress record, and never one of another machine's or a live one's."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import tools.policy.grants as grants
from tools.core.status import Decision
from tools.job.attempt import SUPERVISION_FILE, Supervision
from tools.job.reconcile import reconcile_lost_attempts
from tools.policy.records import HoldState, Lifecycle
from tools.policy.store import spend_store

from ..policy.test_store import POLICY, bound, priced

PRICE = 0.001  # dollars a second


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def held(job: str, owner: int) -> str:
    """A job with one attempt holding money, started by ``owner``; its attempt id."""
    store = spend_store()
    est = priced(0.05)
    store.open_job(job, job, POLICY, max_retries=3)
    request = store.open_request(job, bound(est), 0.05, f"call-{job}", "{}")
    answer = store.answer(
        request, answer_id=job.ljust(32, "x"), decision=Decision.APPROVE, decided_by="person:t", estimate=est
    )
    ticket = store.start_attempt(
        job,
        grant_id=answer.grant.grant_id,
        binding=bound(est),
        estimated_seconds=60.0,
        price_usd_per_s=PRICE,
        default_timeout_s=600.0,
        owner_pid=owner,
    )
    return ticket.attempt_id


def row(attempt_id: str):
    return next(a for a in spend_store().attempts() if a.attempt_id == attempt_id)


def test_an_attempt_whose_owner_died_with_its_watchdog_is_billed_to_its_last_progress(tmp_path) -> None:
    attempt = held("lost", dead_pid())
    workdir = tmp_path / "runs" / "lost" / "attempt-1"
    workdir.mkdir(parents=True)
    started = row(attempt).started
    (workdir / "metrics.jsonl").write_text('{"type": "step"}\n')
    os.utime(workdir / "metrics.jsonl", (started + 30, started + 30))
    gone = Supervision(host="here", owner=dead_pid(), watchdog=dead_pid(), trainer_group=dead_pid())
    (workdir / SUPERVISION_FILE).write_text(gone.model_dump_json())
    [said] = reconcile_lost_attempts()
    booked = row(attempt)
    assert booked.state is HoldState.CAPTURED and booked.captured_usd == pytest.approx(30 * PRICE)
    assert "run lost attempt 1" in said and "$0.0300" in said
    assert spend_store().job("lost").lifecycle is Lifecycle.CLOSED  # no run folder to report: closed, continuable
    assert reconcile_lost_attempts() == []  # once


def test_an_attempt_with_no_progress_record_bills_nothing() -> None:
    attempt = held("early", dead_pid())  # died between the store's yes and the trainer's start
    reconcile_lost_attempts()
    assert row(attempt).state is HoldState.CAPTURED and row(attempt).captured_usd == 0


def test_a_live_owner_or_a_live_watchdog_keeps_its_attempt(tmp_path) -> None:
    mine = held("mine", os.getpid())
    watched = held("watched", dead_pid())
    watchdog = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        workdir = tmp_path / "runs" / "watched" / "attempt-1"
        workdir.mkdir(parents=True)
        keeper = Supervision(host="here", owner=dead_pid(), watchdog=watchdog.pid, trainer_group=dead_pid())
        (workdir / SUPERVISION_FILE).write_text(keeper.model_dump_json())
        time.sleep(0.1)
        assert reconcile_lost_attempts() == []
        assert row(mine).state is HoldState.HELD and row(watched).state is HoldState.HELD
    finally:
        watchdog.kill()
        watchdog.wait()
    assert [line.split(":")[0] for line in reconcile_lost_attempts()] == ["run watched attempt 1"]


def test_another_machines_attempt_is_not_this_ones_to_reconcile(monkeypatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(grants, "this_host", lambda: "another-server")
        attempt = held("elsewhere", dead_pid())  # its pid means nothing here
    assert reconcile_lost_attempts() == []
    assert row(attempt).state is HoldState.HELD
