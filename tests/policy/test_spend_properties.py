"""Random sequences against the real spend store: whatever the order, the money adds up and nothing runs unpaid.

Hypothesis's stateful testing plays a thread of jobs the way the tools and the people drive the store: estimates,
policy grants, questions and answers (some answered twice at once, or replayed), cancels, new requests, attempts
started by several callers at once on one grant, with data changed under them, attempts that end, crash (their
process killed between start and capture, booked later by the watchdog), and a fault injected inside a store
transaction (the process dying before its commit). After every step the invariants are checked against what the
store holds and what the simulated attempts billed.

The machine runs on both stores: a SQLite file, and a real PostgreSQL server (a fresh database per example;
fewer examples there, each one creating a database).
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import tools.policy.store as store_module
from tests.stand_ins import placed, shipped_estimate
from tools.core.database import close_idle
from tools.core.errors import GuardRefusal, StorageError
from tools.core.money import minimum_hold_usd
from tools.core.spec import BudgetPolicy, CostEstimate, TrainingSpec
from tools.policy.db import transaction
from tools.policy.records import Binding, GrantState, HoldState, Lifecycle
from tools.policy.store import SpendStore

from .test_gate import DATA

PRICE = 1.0 / 3600  # $1 an hour
OPERATOR = BudgetPolicy(max_budget_usd=3.0, soft_threshold_usd=1.0)
THREAD = "thread-1"


def priced(usd: float) -> CostEstimate:
    spec = TrainingSpec(model_name="TinyLlama/TinyLlama-1.1B-Chat-v1.0", dataset_path="d.jsonl")
    est = placed(shipped_estimate(spec, dataset_stats=DATA))
    seconds = usd / PRICE
    breakdown = est.cost_breakdown.model_copy(update={"estimated_seconds": seconds})
    return est.model_copy(update={"estimated_cost_usd": usd, "cost_breakdown": breakdown})


ESTIMATES = [priced(usd) for usd in (0.05, 0.4, 0.9, 1.6, 2.5)]


class Fault(Exception):
    """The process died inside a store transaction, before its commit."""


@dataclass
class Attempt:
    attempt_id: str
    job: str
    held: float
    started_step: int
    billed: float | None = None


@dataclass
class Job:
    job_id: str
    binding: Binding | None = None
    estimate: CostEstimate | None = None
    grant_id: str | None = None
    grants: list[str] = field(default_factory=list)
    request_id: str | None = None
    cancelled_at: int | None = None


class SpendMachine(RuleBasedStateMachine):
    def __init__(self, new_database: Callable[[], str] | None = None) -> None:
        super().__init__()
        self.new_database = new_database  # a fresh PostgreSQL database's URL; None: a SQLite file
        self.jobs: list[Job] = []
        self.attempts: dict[str, Attempt] = {}
        self.step = 0
        self.fault_next = False
        self.bindings_used: dict[str, Binding] = {}

    @initialize()
    def open_store(self) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="aegis-spend-")
        location = self.new_database() if self.new_database else Path(self.folder.name) / "spend.sqlite"
        self.store = SpendStore(location)
        self.new_request(tighten=None)

    def teardown(self) -> None:
        if hasattr(self, "folder"):
            self.folder.cleanup()
        if hasattr(self, "store") and isinstance(self.store.path, str):
            close_idle(self.store.path)

    # -- people and tools ------------------------------------------------------------------------

    @rule(tighten=st.none() | st.sampled_from([0.5, 1.5, 2.5]))
    def new_request(self, tighten: float | None) -> None:
        """A new request in the same thread: a new job whose gate counts what the thread spent and holds."""
        job_id = f"job-{len(self.jobs) + 1}"
        with self.faults():
            self.store.open_job(job_id, THREAD, OPERATOR.tightened(tighten), max_retries=2)
            self.jobs.append(Job(job_id))

    @rule(data=st.data(), which=st.integers(0, len(ESTIMATES) - 1), spec=st.sampled_from("ab"))
    def estimate_job(self, data: st.DataObject, which: int, spec: str) -> None:
        job = data.draw(st.sampled_from(self.jobs))
        est = ESTIMATES[which]
        with self.faults(), self.refusals():
            self.store.require_open(job.job_id)
            job.binding = Binding(spec_hash=f"spec-{spec}", estimate_hash=est.estimate_hash(), data_digest="bytes-1")
            job.estimate = est

    @precondition(lambda self: any(job.binding for job in self.jobs))
    @rule(data=st.data(), person_says_yes=st.booleans())
    def ask_for_approval(self, data: st.DataObject, person_says_yes: bool) -> None:
        """The gate grants by policy, refuses, or asks a person, who may say yes at once."""
        job = data.draw(st.sampled_from([job for job in self.jobs if job.binding]))
        assert job.binding is not None and job.estimate is not None
        hold = minimum_hold_usd(job.estimate.cost_breakdown.estimated_seconds, PRICE)
        with self.faults(), self.refusals():
            outcome, grant = self.store.grant_by_policy(job.job_id, job.binding, job.estimate, hold)
            if grant is not None:
                assert outcome.outcome == "approved"
                job.grant_id = grant.grant_id
                job.grants.append(grant.grant_id)
            elif outcome.outcome == "needs_human":
                job.request_id = self.store.open_request(
                    job.job_id, job.binding, job.estimate.estimated_cost_usd, f"call-{self.step}", "{}"
                )
                if person_says_yes:
                    answered = self.store.answer(
                        job.request_id,
                        answer_id=f"{self.step:032x}",
                        decision="approve",
                        decided_by="person:yes",
                        estimate=job.estimate,
                        min_hold_usd=hold,
                    )
                    if answered.grant is not None:
                        job.grant_id = answered.grant.grant_id
                        job.grants.append(answered.grant.grant_id)

    @rule(
        data=st.data(), decision=st.sampled_from(["approve", "approve", "cancel", "optimize"]), racers=st.integers(1, 3)
    )
    def person_answers(self, data: st.DataObject, decision: str, racers: int) -> None:
        """One answer, or several people (processes) answering the same question at once: one is taken."""
        job = data.draw(st.sampled_from(self.jobs))
        if job.request_id is None or job.estimate is None:
            return
        hold = minimum_hold_usd(job.estimate.cost_breakdown.estimated_seconds, PRICE)
        self.step += 1
        results: list[tuple[int, object]] = []

        def answer(i: int) -> None:
            try:
                result: object = self.store.answer(
                    job.request_id,
                    answer_id=f"{self.step:016x}{i:016x}",
                    decision=decision,
                    decided_by=f"person:p{i}",
                    estimate=job.estimate,
                    min_hold_usd=hold,
                )
            except Exception as exc:  # noqa: BLE001 - anything but a refusal in words fails the test below
                result = exc
            results.append((i, result))

        self.race(answer, racers)
        assert all(isinstance(r, GuardRefusal) for _, r in results if isinstance(r, Exception)), results
        taken = [(i, r) for i, r in results if not isinstance(r, Exception)]
        assert len(taken) <= 1, results
        for i, answered in taken:
            if answered.decision == "cancel":
                job.cancelled_at = self.step
            if answered.grant is not None:
                job.grant_id = answered.grant.grant_id
                job.grants.append(answered.grant.grant_id)
            # the same answer replayed (a resumed tool re-running) gives the same thing back
            again = self.store.answer(
                job.request_id,
                answer_id=f"{self.step:016x}{i:016x}",
                decision=decision,
                decided_by="person:replay",
                estimate=job.estimate,
                min_hold_usd=hold,
            )
            assert (again.grant.grant_id if again.grant else None) == (
                answered.grant.grant_id if answered.grant else None
            )

    @precondition(lambda self: any(job.grants for job in self.jobs))
    @rule(
        data=st.data(),
        callers=st.sampled_from([1, 1, 2, 4]),
        stale=st.sampled_from([False, False, False, True]),
        changed=st.sampled_from([False, False, False, True]),
    )
    def start_attempts(self, data: st.DataObject, callers: int, stale: bool, changed: bool) -> None:
        """Parallel tool calls (or processes) starting on one grant; maybe an older grant, maybe other bytes."""
        job = data.draw(st.sampled_from([job for job in self.jobs if job.grants]))
        assert job.binding is not None and job.estimate is not None
        grant_id = job.grants[0] if stale and job.grants else job.grant_id
        binding = job.binding.model_copy(update={"data_digest": "bytes-2"}) if changed else job.binding
        self.step += 1
        started: list[object] = []
        money_before = self.store.money(THREAD).committed_usd
        policy = self.store.job(job.job_id).policy

        def start(_i: int) -> None:
            try:
                started.append(
                    self.store.start_attempt(
                        job.job_id,
                        grant_id=grant_id,
                        binding=binding,
                        estimated_seconds=job.estimate.cost_breakdown.estimated_seconds,
                        price_usd_per_s=PRICE,
                        default_timeout_s=4 * job.estimate.cost_breakdown.estimated_seconds + 600,
                        owner_pid=1,
                    )
                )
            except Exception as exc:  # noqa: BLE001 - anything but a refusal in words fails the test below
                started.append(exc)

        self.race(start, callers)
        unexpected = [e for e in started if isinstance(e, Exception) and not isinstance(e, GuardRefusal)]
        assert not unexpected, unexpected
        tickets = [t for t in started if not isinstance(t, Exception)]
        assert len(tickets) <= 1, "one grant started two attempts"
        for ticket in tickets:
            assert not changed, "an attempt started on bytes other than the approved ones"
            assert money_before + ticket.held_usd <= policy.max_budget_usd + 1e-9
            self.attempts[ticket.attempt_id] = Attempt(ticket.attempt_id, job.job_id, ticket.held_usd, self.step)
            self.bindings_used[ticket.attempt_id] = binding

    @precondition(lambda self: any(a.billed is None for a in self.attempts.values()))
    @rule(data=st.data(), share=st.floats(0.0, 1.0))
    def attempt_ends(self, data: st.DataObject, share: float) -> None:
        """The attempt ended (here, or its watchdog booked it after a crash): it billed at most its hold."""
        running = [a for a in self.attempts.values() if a.billed is None]
        attempt = data.draw(st.sampled_from(running))
        billed = attempt.held * share
        with self.faults():
            self.store.capture(attempt.attempt_id, billed, "succeeded")
            attempt.billed = billed
            self.store.capture(attempt.attempt_id, attempt.held * 2, "twice")  # a second capture changes nothing

    @rule()
    def inject_fault(self) -> None:
        """The next store transaction dies before its commit (a kill, a power cut)."""
        self.fault_next = True

    @rule(data=st.data())
    def close_job(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from(self.jobs))
        with self.faults():
            self.store.close(job.job_id, "report written")

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def every_attempt_consumed_a_grant_of_its_own(self) -> None:
        if not hasattr(self, "store"):
            return
        rows = self.store.attempts(thread_id=THREAD)
        assert len({row.grant_id for row in rows}) == len(rows)
        grants = {g.grant_id: g for job in self.jobs for g in self.store.grants(job.job_id)}
        for row in rows:
            grant = grants[row.grant_id]
            assert grant.job_id == row.job_id and grant.state is GrantState.CONSUMED
            assert grant.binding == self.bindings_used[row.attempt_id]
        assert {row.attempt_id for row in rows} == set(self.attempts)

    @invariant()
    def money_captured_plus_held_is_what_the_attempts_billed(self) -> None:
        if not hasattr(self, "store"):
            return
        money = self.store.money(THREAD)
        billed = sum(a.billed for a in self.attempts.values() if a.billed is not None)
        held = sum(a.held for a in self.attempts.values() if a.billed is None)
        assert money.captured_usd == pytest.approx(billed, abs=1e-9)
        assert money.held_usd == pytest.approx(held, abs=1e-9)
        rows = {row.attempt_id: row for row in self.store.attempts(thread_id=THREAD)}
        for attempt in self.attempts.values():
            assert (rows[attempt.attempt_id].state is HoldState.CAPTURED) == (attempt.billed is not None)

    @invariant()
    def nothing_ran_after_a_cancel(self) -> None:
        for job in self.jobs:
            if job.cancelled_at is not None:
                assert self.store.job(job.job_id).lifecycle is Lifecycle.CANCELLED
                later = [a for a in self.attempts.values() if a.job == job.job_id and a.started_step > job.cancelled_at]
                assert not later

    @invariant()
    def the_thread_never_passes_the_hard_limit(self) -> None:
        if hasattr(self, "store"):
            assert self.store.money(THREAD).committed_usd <= OPERATOR.max_budget_usd + 1e-9

    # -- plumbing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def refusals(self) -> Iterator[None]:
        with contextlib.suppress(GuardRefusal):
            yield

    @contextlib.contextmanager
    def faults(self) -> Iterator[None]:
        """If a fault is due, the store's next transaction raises inside, before COMMIT: nothing of it may stick."""
        self.step += 1
        if not self.fault_next:
            yield
            return
        self.fault_next = False
        real = store_module.transaction

        @contextlib.contextmanager
        def dying(path: Path | str) -> Iterator[object]:
            with real(path) as db:
                yield db
                raise Fault

        store_module.transaction = dying
        try:
            yield
        except Fault:
            pass  # the model's own update after the store call never ran, like the dead process's
        finally:
            store_module.transaction = real

    @staticmethod
    def race(target, callers: int) -> None:  # noqa: ANN001
        threads = [threading.Thread(target=target, args=(i,)) for i in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


EXAMPLES = {"sqlite": 300, "postgres": 100}


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_the_money_adds_up_whatever_the_order(kind: str, request: pytest.FixtureRequest) -> None:
    new_database = request.getfixturevalue("postgres_server").new_database if kind == "postgres" else None
    run_state_machine_as_test(
        lambda: SpendMachine(new_database),
        settings=settings(
            max_examples=EXAMPLES[kind],
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )


def test_a_crash_between_start_and_capture_leaves_the_money_held_not_lost(store_location: Path | str) -> None:
    store = SpendStore(store_location)
    est = ESTIMATES[0]
    binding = Binding(spec_hash="s", estimate_hash=est.estimate_hash(), data_digest="d")
    store.open_job("j1", THREAD, OPERATOR, max_retries=1)
    _, grant = store.grant_by_policy("j1", binding, est)
    ticket = store.start_attempt(
        "j1",
        grant_id=grant.grant_id,
        binding=binding,
        estimated_seconds=60,
        price_usd_per_s=PRICE,
        default_timeout_s=600,
        owner_pid=1,
    )
    with pytest.raises(StorageError), transaction(Path(tempfile.gettempdir()) / "missing" / "\x00bad"):
        pass  # a store that cannot be opened says so in one StorageError
    assert store.money(THREAD).held_usd == pytest.approx(ticket.held_usd)  # held until someone books it
    store.capture(ticket.attempt_id, 0.01, "interrupted")
    assert store.money(THREAD).held_usd == 0 and store.money(THREAD).captured_usd == pytest.approx(0.01)
