"""Limits beyond one conversation: per person and for the installation, per day and per month, checked in the
transaction that starts an attempt, with the operator's policy as it is at that moment and the brake on top.

Every test runs on a SQLite file and on a real PostgreSQL database (``store_location``)."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tools.core.catalog import GPU
from tools.core.errors import GuardRefusal
from tools.core.spec import BudgetPolicy
from tools.core.status import Decision
from tools.policy.records import SpendKind
from tools.policy.scopes import OperatorPolicy, Scope, ScopeLimits, ScopeMoney, stricter, window_start
from tools.policy.store import SpendStore

from .test_store import PER_HOUR, POLICY, bound, priced, start

DEC_31_23H = datetime(2026, 12, 31, 23, 0, tzinfo=UTC).timestamp()
JAN_1_00H30 = datetime(2027, 1, 1, 0, 30, tzinfo=UTC).timestamp()
# One attempt at $1/h with the default 1800 s limit holds (1800 + 30) s: $0.508. $0.60 pays for one, not two.
ONE_RUN = 0.60


class Operator:
    """The operator's policy as a test changes it while requests wait (the store reads it at every decision)."""

    def __init__(self, **limits: float) -> None:
        self.policy = OperatorPolicy(thread=POLICY, scopes=ScopeLimits(**limits))

    def __call__(self) -> OperatorPolicy:
        return self.policy

    def set(self, thread: BudgetPolicy | None = None, **limits: float) -> None:
        scopes = self.policy.scopes.model_copy(update=limits)
        self.policy = OperatorPolicy(thread=thread or self.policy.thread, scopes=scopes)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def a_store(location: Path | str, operator: Operator, clock: Clock | None = None) -> SpendStore:
    return SpendStore(location, operator=operator, clock=clock or Clock(DEC_31_23H))


def granted(store: SpendStore, job: str, thread: str, person: str) -> str:
    est = priced(0.05)
    store.open_job(job, thread, POLICY, max_retries=3, person=person)
    outcome, grant = store.grant_by_policy(job, bound(est), est)
    assert grant is not None, outcome.reason
    return grant.grant_id


def run(store: SpendStore, job: str, grant_id: str):
    return start(store, job, grant_id, bound(priced(0.05)))


def test_two_threads_of_one_person_share_the_monthly_limit(store_location: Path | str) -> None:
    store = a_store(store_location, Operator(person_month_usd=ONE_RUN))
    first = run(store, "j1", granted(store, "j1", "t1", "alice"))
    assert first.held_usd == pytest.approx(1830 * PER_HOUR)
    second = granted(store, "j2", "t2", "alice")  # the estimate alone fits what is left; the hold does not
    with pytest.raises(GuardRefusal, match=r"alice's monthly limit: \$0\.60, \$0\.51 spent or held this month"):
        run(store, "j2", second)
    bob = run(store, "j3", granted(store, "j3", "t3", "bob"))  # another person's month is their own
    assert bob.attempt == 1
    refused = [r for r in store.ledger() if r.kind is SpendKind.REFUSED]
    assert [(r.person, r.scope, r.thread_id) for r in refused] == [("alice", Scope.PERSON_MONTH.value, "t2")]


def _start_in_process(location: str, job: str, grant_id: str, out: multiprocessing.Queue) -> None:
    store = a_store(location, Operator(person_month_usd=ONE_RUN))
    try:
        out.put(run(store, job, grant_id).job_id)
    except GuardRefusal as exc:
        out.put(str(exc))


def test_two_processes_of_one_person_start_exactly_one(store_location: Path | str) -> None:
    store = a_store(store_location, Operator(person_month_usd=ONE_RUN))
    grants = {job: granted(store, job, f"t-{job}", "alice") for job in ("j1", "j2")}
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_start_in_process, args=(str(store_location), j, g, out)) for j, g in grants.items()]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=90)
    answers = [out.get(timeout=5) for _ in procs]
    assert sum(a in grants for a in answers) == 1, answers
    assert sum("alice's monthly limit" in a for a in answers) == 1, answers
    assert len(store.attempts()) == 1


def test_the_installation_limit_holds_across_persons(store_location: Path | str) -> None:
    store = a_store(store_location, Operator(install_day_usd=ONE_RUN))
    run(store, "j1", granted(store, "j1", "t1", "alice"))
    with pytest.raises(
        GuardRefusal, match=r"the installation's daily limit: \$0\.60, \$0\.51 spent or held by everyone"
    ):
        run(store, "j2", granted(store, "j2", "t2", "bob"))


def test_windows_roll_over_at_midnight_and_month_end_utc(store_location: Path | str) -> None:
    clock = Clock(DEC_31_23H)
    store = a_store(store_location, Operator(person_day_usd=ONE_RUN, person_month_usd=1.0), clock)
    first = run(store, "j1", granted(store, "j1", "t1", "alice"))
    store.capture(first.attempt_id, 0.50, "succeeded")
    with pytest.raises(GuardRefusal, match="alice's daily limit"):
        run(store, "j2", granted(store, "j2", "t2", "alice"))
    clock.now = JAN_1_00H30  # a new day and a new month: December's $0.50 no longer counts
    assert run(store, "j3", granted(store, "j3", "t3", "alice")).attempt == 1
    limits = {s.scope: s for s in store.limits_now("alice")}
    assert limits[Scope.PERSON_MONTH].committed_usd == pytest.approx(1830 * PER_HOUR)


def test_a_limit_lowered_while_a_request_waits_refuses_its_approval(store_location: Path | str) -> None:
    operator = Operator()
    store = a_store(store_location, operator)
    est = priced(3.0)  # above the soft threshold: a person must approve
    store.open_job("j1", "t1", POLICY, max_retries=3, person="alice")
    assert store.gate("j1", est).outcome == "needs_human"
    request = store.open_request("j1", bound(est), 3.0, "ask-1", "{}")
    operator.set(person_month_usd=2.0)
    answered = store.answer(request, answer_id="a1", decision=Decision.APPROVE, decided_by="person:alice", estimate=est)
    assert answered.grant is None and answered.gate is not None
    assert answered.gate.reason.startswith("alice's monthly limit: $2.00, $0.00 spent or held this month")


def test_the_thread_limit_lowered_by_the_operator_applies_to_a_job_opened_before(store_location: Path | str) -> None:
    operator = Operator()
    store = a_store(store_location, operator)
    grant = granted(store, "j1", "t1", "alice")
    operator.set(thread=BudgetPolicy(max_budget_usd=0.000001, soft_threshold_usd=0.0))  # the emergency stop
    with pytest.raises(GuardRefusal, match="left under the hard limit"):
        run(store, "j1", grant)
    assert store.attempts() == []


def test_the_brake_refuses_every_start_until_released(store_location: Path | str) -> None:
    store = a_store(store_location, Operator())
    grant = granted(store, "j1", "t1", "alice")
    store.freeze("carol", "invoice review")
    with pytest.raises(GuardRefusal, match=r"spending is frozen by the operator \(carol: invoice review\)"):
        run(store, "j1", grant)
    store.open_job("j2", "t2", POLICY, max_retries=3, person="bob")
    refused, no_grant = store.grant_by_policy("j2", bound(priced(0.05)), priced(0.05))
    assert no_grant is None and "frozen" in refused.reason
    store.unfreeze("carol")
    assert run(store, "j1", grant).attempt == 1
    scopes = [r.scope for r in store.ledger() if r.kind is SpendKind.REFUSED]
    assert scopes == ["freeze", "freeze"]


@pytest.mark.parametrize("price", [None, float("nan"), float("inf"), -1.0, "0.1"])
def test_a_price_that_cannot_be_stated_refuses(store_location: Path | str, price: object) -> None:
    store = a_store(store_location, Operator())
    grant = granted(store, "j1", "t1", "alice")
    with pytest.raises(GuardRefusal, match="no price can be stated"):
        store.start_attempt(
            "j1",
            grant_id=grant,
            binding=bound(priced(0.05)),
            estimated_seconds=600.0,
            price_usd_per_s=price,  # type: ignore[arg-type]
            default_timeout_s=1800.0,
            owner_pid=1,
        )
    assert store.attempts() == []


def test_a_gpu_without_a_catalog_price_is_never_billed_as_zero() -> None:
    gpu = GPU(
        name="mystery", modal_name=None, memory_gb=80, bf16_tflops=100, bf16_supported=True, price_usd_per_hour=None
    )
    with pytest.raises(GuardRefusal, match="no price can be stated for the mystery"):
        _ = gpu.price_usd_per_sec


def test_the_stricter_policy_is_in_force_and_windows_are_utc_calendar_days() -> None:
    job = BudgetPolicy(max_budget_usd=5.0, soft_threshold_usd=2.0, allow_auto_approve=True)
    now = BudgetPolicy(max_budget_usd=1.0, soft_threshold_usd=1.0, allow_auto_approve=False)
    assert stricter(job, now) == BudgetPolicy(max_budget_usd=1.0, soft_threshold_usd=1.0, allow_auto_approve=False)
    assert window_start(Scope.PERSON_MONTH, JAN_1_00H30) == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    assert window_start(Scope.INSTALL_DAY, DEC_31_23H) == datetime(2026, 12, 31, tzinfo=UTC).timestamp()
    said = ScopeMoney(scope=Scope.PERSON_MONTH, person="alice", limit_usd=40.0, committed_usd=38.9).describe()
    assert said == "alice's monthly limit: $40.00, $38.90 spent or held this month"


def test_a_refusal_for_the_least_an_attempt_may_bill_is_kept_under_its_scope(store_location: Path | str) -> None:
    """The estimate alone fits the month; the hold its time limit needs does not: refused, and booked as such."""
    store = a_store(store_location, Operator(person_month_usd=0.30))
    est = priced(0.05)
    store.open_job("j1", "t1", POLICY, max_retries=3, person="alice")
    outcome, grant = store.grant_by_policy("j1", bound(est), est, min_hold_usd=0.50)
    assert grant is None and outcome.refused_by == Scope.PERSON_MONTH.value
    assert outcome.reason.startswith("alice's monthly limit: $0.30, $0.00 spent or held this month")
    [refused] = store.ledger()
    assert (refused.kind, refused.scope, refused.usd) == (SpendKind.REFUSED, "person_month", 0.05)
