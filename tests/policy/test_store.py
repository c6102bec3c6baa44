"""The spend store: one grant starts one attempt, holds count, terminal states stay terminal, across threads
and processes, and a broken file is one line that stops everything rather than a traceback that lets it through.

Every money test runs twice: on a SQLite file, and on a real PostgreSQL (a fresh database per test), where
processes racing for one grant are servers sharing one database."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from tests.stand_ins import placed, shipped_estimate
from tools.core.errors import GuardRefusal, StorageError
from tools.core.spec import BudgetPolicy, CostEstimate, TrainingSpec
from tools.policy.records import Binding, GrantState, HoldState, Lifecycle
from tools.policy.store import SpendStore

from .test_gate import DATA

POLICY = BudgetPolicy(max_budget_usd=5.0, soft_threshold_usd=2.0)
PER_HOUR = 1.0 / 3600
BOUND = Binding(spec_hash="spec-1", estimate_hash="unset", data_digest="bytes-1")


def priced(usd: float) -> CostEstimate:
    spec = TrainingSpec(model_name="TinyLlama/TinyLlama-1.1B-Chat-v1.0", dataset_path="d.jsonl")
    return placed(shipped_estimate(spec, dataset_stats=DATA)).model_copy(update={"estimated_cost_usd": usd})


def bound(est: CostEstimate, **changes: str) -> Binding:
    return BOUND.model_copy(update={"estimate_hash": est.estimate_hash(), **changes})


def start(store: SpendStore, job: str, grant_id: str | None, binding: Binding, seconds: float = 600.0):
    return store.start_attempt(
        job,
        grant_id=grant_id,
        binding=binding,
        estimated_seconds=seconds,
        price_usd_per_s=PER_HOUR,
        default_timeout_s=1800.0,
        owner_pid=1,
    )


@pytest.fixture
def store(store_location: Path | str) -> SpendStore:
    return SpendStore(store_location)


def test_one_grant_starts_one_attempt(store: SpendStore) -> None:
    est = priced(0.5)
    store.open_job("j1", "t1", POLICY, max_retries=3)
    outcome, grant = store.grant_by_policy("j1", bound(est), est)
    assert outcome.outcome == "approved" and grant is not None
    ticket = start(store, "j1", grant.grant_id, bound(est))
    assert ticket.attempt == 1 and ticket.held_usd == pytest.approx((1800 + 30) * PER_HOUR)
    with pytest.raises(GuardRefusal, match="already used by attempt 1"):
        start(store, "j1", grant.grant_id, bound(est))
    assert store.money("t1").held_usd == pytest.approx(ticket.held_usd)
    store.capture(ticket.attempt_id, 0.12, "succeeded")
    store.capture(ticket.attempt_id, 9.99, "succeeded")  # a second capture changes nothing
    assert store.money("t1").captured_usd == pytest.approx(0.12) and store.money("t1").held_usd == 0


def test_parallel_starts_on_one_grant_let_exactly_one_through(store: SpendStore) -> None:
    est = priced(0.5)
    store.open_job("j1", "t1", POLICY, max_retries=3)
    _, grant = store.grant_by_policy("j1", bound(est), est)
    results: list[object] = []

    def go() -> None:
        try:
            results.append(start(store, "j1", grant.grant_id, bound(est)))
        except GuardRefusal as exc:
            results.append(exc)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(not isinstance(r, GuardRefusal) for r in results) == 1
    assert len(store.attempts(job_id="j1")) == 1


def _race(location: str, grant_id: str, est_hash: str, out: multiprocessing.Queue) -> None:
    binding = BOUND.model_copy(update={"estimate_hash": est_hash})
    try:
        out.put(start(SpendStore(location), "j1", grant_id, binding).attempt)
    except GuardRefusal as exc:
        out.put(str(exc))


def test_processes_racing_for_one_grant_start_one_attempt(store: SpendStore) -> None:
    est = priced(0.5)
    store.open_job("j1", "t1", POLICY, max_retries=3)
    _, grant = store.grant_by_policy("j1", bound(est), est)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_race, args=(str(store.path), grant.grant_id, est.estimate_hash(), out)) for _ in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    answers = [out.get(timeout=5) for _ in procs]
    assert answers.count(1) == 1 and sum("already used" in str(a) for a in answers) == 3


def test_a_grant_is_for_its_bytes_and_voided_for_good_when_they_changed(store: SpendStore) -> None:
    est = priced(0.5)
    store.open_job("j1", "t1", POLICY, max_retries=3)
    _, grant = store.grant_by_policy("j1", bound(est), est)
    with pytest.raises(GuardRefusal, match=r"the training data changed \(approved bytes-1, now bytes-2"):
        start(store, "j1", grant.grant_id, bound(est, data_digest="bytes-2"))
    with pytest.raises(GuardRefusal, match="void"):
        start(store, "j1", grant.grant_id, bound(est))  # the right bytes again do not revive it
    with pytest.raises(GuardRefusal, match="spec changed"):
        _, other = store.grant_by_policy("j1", bound(est), est)
        start(store, "j1", other.grant_id, bound(est, spec_hash="spec-2"))
    assert not store.attempts(job_id="j1")


def test_a_cancel_is_terminal(store: SpendStore) -> None:
    est = priced(3.0)
    store.open_job("j1", "t1", POLICY, max_retries=3)
    outcome, grant = store.grant_by_policy("j1", bound(est), est)
    assert outcome.outcome == "needs_human" and grant is None
    request = store.open_request("j1", bound(est), 3.0, "call-1", "{}")
    assert store.open_request("j1", bound(est), 3.0, "call-1", "{}") == request  # safe to repeat on resume
    store.answer(request, answer_id="a" * 32, decision="cancel", decided_by="person:test", estimate=est)
    assert store.job("j1").lifecycle is Lifecycle.CANCELLED
    cheap = priced(0.1)
    for attempt in (
        lambda: store.grant_by_policy("j1", bound(cheap), cheap),
        lambda: store.open_request("j1", bound(cheap), 0.1, "call-2", "{}"),
        lambda: store.require_open("j1"),
        lambda: start(store, "j1", "grant-x", bound(cheap)),
    ):
        with pytest.raises(GuardRefusal, match="cancelled"):
            attempt()


def test_an_answer_is_taken_once_and_replayed_the_same(store: SpendStore) -> None:
    est = priced(3.0)
    store.open_job("j1", "t1", POLICY, max_retries=3)
    request = store.open_request("j1", bound(est), 3.0, "call-1", "{}")
    first = store.answer(request, answer_id="a" * 32, decision="approve", decided_by="person:one", estimate=est)
    again = store.answer(request, answer_id="a" * 32, decision="approve", decided_by="person:one", estimate=est)
    assert first.grant is not None and again.grant == first.grant  # a resumed tool re-running gets the same grant
    with pytest.raises(GuardRefusal, match="already answered"):
        store.answer(request, answer_id="b" * 32, decision="approve", decided_by="person:two", estimate=est)
    assert [g.grant_id for g in store.grants("j1")] == [first.grant.grant_id]


def test_money_held_and_spent_earlier_in_the_thread_counts_for_every_job_in_it(store: SpendStore) -> None:
    est = priced(1.5)
    policy = BudgetPolicy(max_budget_usd=3.0, soft_threshold_usd=3.0)
    store.open_job("j1", "t1", policy, max_retries=0)
    _, grant = store.grant_by_policy("j1", bound(est), est)
    ticket = start(store, "j1", grant.grant_id, bound(est), seconds=60)
    store.capture(ticket.attempt_id, 1.6, "succeeded")
    store.open_job("j2", "t1", policy, max_retries=0)
    outcome, none = store.grant_by_policy("j2", bound(est), est)
    assert none is None and outcome.outcome == "refused" and outcome.spent_usd == pytest.approx(1.6)
    store.open_job("j3", "t2", policy, max_retries=0)  # another thread has its own money
    assert store.grant_by_policy("j3", bound(est), est)[1] is not None


def test_a_hold_is_cut_to_the_budget_and_an_attempt_it_cannot_cover_is_refused(store: SpendStore) -> None:
    est = priced(0.1)
    policy = BudgetPolicy(max_budget_usd=0.3, soft_threshold_usd=0.3)
    store.open_job("j1", "t1", policy, max_retries=3)
    _, grant = store.grant_by_policy("j1", bound(est), est)
    ticket = start(store, "j1", grant.grant_id, bound(est), seconds=600)
    assert ticket.held_usd == pytest.approx(0.3) and ticket.timeout_s < 1800
    _, second = store.grant_by_policy("j1", bound(est), est)
    assert second is None  # the hold already takes the whole budget: the gate refuses by the money held
    store.capture(ticket.attempt_id, 0.1, "failed")
    _, third = store.grant_by_policy("j1", bound(est), est)
    with pytest.raises(GuardRefusal, match="over budget"):
        start(store, "j1", third.grant_id, bound(est), seconds=600)
    assert [a.state for a in store.attempts(thread_id="t1")] == [HoldState.CAPTURED]


def test_the_retry_bound_is_the_stores(store: SpendStore) -> None:
    est = priced(0.01)
    store.open_job("j1", "t1", POLICY, max_retries=1)
    for _ in range(2):
        _, grant = store.grant_by_policy("j1", bound(est), est)
        store.capture(start(store, "j1", grant.grant_id, bound(est), seconds=10).attempt_id, 0.0, "failed")
    _, grant = store.grant_by_policy("j1", bound(est), est)
    with pytest.raises(GuardRefusal, match="max_retries is 1"):
        start(store, "j1", grant.grant_id, bound(est), seconds=10)


def test_closing_voids_what_is_left(store: SpendStore) -> None:
    est = priced(0.5)
    store.open_job("j1", "t1", POLICY, max_retries=3)
    _, grant = store.grant_by_policy("j1", bound(est), est)
    store.close("j1", "report written")
    assert store.grants("j1")[0].state is GrantState.VOID
    with pytest.raises(GuardRefusal, match="closed"):
        start(store, "j1", grant.grant_id, bound(est))


@pytest.mark.parametrize("garbage", [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 5000])
def test_a_corrupt_store_is_one_line_and_nothing_starts(tmp_path: Path, garbage: bytes) -> None:
    store = SpendStore(tmp_path / "spend.sqlite")
    store.path.write_bytes(garbage)
    with pytest.raises(StorageError) as caught:
        store.open_job("j1", "t1", POLICY, max_retries=3)
    message = str(caught.value)
    assert str(store.path) in message and "move it aside" in message and "\n" not in message


def test_attempts_running_at_once_hold_no_more_than_the_budget_together(store: SpendStore) -> None:
    est = priced(0.4)
    policy = BudgetPolicy(max_budget_usd=3.0, soft_threshold_usd=3.0)
    store.open_job("j1", "t1", policy, max_retries=3)
    store.open_job("j2", "t1", policy, max_retries=3)
    _, first = store.grant_by_policy("j1", bound(est), est)
    _, second = store.grant_by_policy("j2", bound(est), est)
    tickets = [
        store.start_attempt(
            job,
            grant_id=grant.grant_id,
            binding=bound(est),
            estimated_seconds=1440,
            price_usd_per_s=PER_HOUR,
            default_timeout_s=6360,  # each alone would hold $1.78
            owner_pid=1,
        )
        for job, grant in (("j1", first), ("j2", second))
    ]
    assert tickets[0].held_usd == pytest.approx((6360 + 30) * PER_HOUR)
    assert tickets[1].held_usd == pytest.approx(3.0 - tickets[0].held_usd) and tickets[1].timeout_s < 6360
    assert store.money("t1").committed_usd <= 3.0 + 1e-9
