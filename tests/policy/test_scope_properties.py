"""Whatever the order of opens, grants, starts, captures, limit changes, freezes and days passing: no attempt starts
while the brake is on, and right after every start each window (thread, person, installation; day and month)
holds no more than the limit then in force. On SQLite and on PostgreSQL."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from tools.core.errors import GuardRefusal
from tools.core.money import MONEY_EPSILON
from tools.core.spec import BudgetPolicy
from tools.policy.records import HoldState
from tools.policy.store import SpendStore

from .test_scopes import Clock, Operator
from .test_store import PER_HOUR, bound, priced

PERSONS = ("alice", "bob")
LIMITS = st.sampled_from([None, 0.3, 0.6, 1.2, 3.0])
START = datetime(2026, 12, 30, 20, 0, tzinfo=UTC).timestamp()


class ScopeMachine(RuleBasedStateMachine):
    def __init__(self, new_database: Callable[[], str] | None = None) -> None:
        super().__init__()
        self.new_database = new_database
        self.grants: list[tuple[str, str]] = []  # (job, grant)
        self.held: list[str] = []
        self.count = 0

    @initialize()
    def open_store(self) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="aegis-scopes-")
        location = self.new_database() if self.new_database else Path(self.folder.name) / "spend.sqlite"
        self.operator, self.clock = Operator(), Clock(START)
        self.store = SpendStore(location, operator=self.operator, clock=self.clock)

    def teardown(self) -> None:
        self.folder.cleanup()

    @rule(person=st.sampled_from(PERSONS), same_thread=st.booleans())
    def open_and_grant(self, person: str, same_thread: bool) -> None:
        self.count += 1
        job, thread = f"j{self.count}", f"t-{person}" if same_thread else f"t{self.count}"
        est = priced(0.05)
        self.store.open_job(job, thread, BudgetPolicy(), max_retries=3, person=person)
        _, grant = self.store.grant_by_policy(job, bound(est), est)
        if grant is not None:
            self.grants.append((job, grant.grant_id))

    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        if not self.grants:
            return
        job, grant = self.grants.pop(data.draw(st.integers(0, len(self.grants) - 1)))
        frozen = self.store.brake().frozen
        try:
            ticket = self.store.start_attempt(
                job,
                grant_id=grant,
                binding=bound(priced(0.05)),
                estimated_seconds=data.draw(st.sampled_from([60.0, 300.0, 900.0])),
                price_usd_per_s=PER_HOUR,
                default_timeout_s=1800.0,
                owner_pid=1,
            )
        except GuardRefusal:
            return
        assert not frozen, "an attempt started while the brake was on"
        self.held.append(ticket.attempt_id)
        person = self.store.job(job).person
        for scope in self.store.limits_now(person, ticket.thread_id):
            assert scope.committed_usd <= scope.limit_usd + MONEY_EPSILON, scope.describe()

    @rule(data=st.data(), share=st.floats(0.0, 1.0))
    def capture(self, data: st.DataObject, share: float) -> None:
        if not self.held:
            return
        attempt_id = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        row = next(a for a in self.store.attempts() if a.attempt_id == attempt_id)
        assert row.state is HoldState.HELD
        self.store.capture(attempt_id, row.held_usd * share, "succeeded")

    @rule(
        person_day=LIMITS,
        person_month=LIMITS,
        install_day=LIMITS,
        install_month=LIMITS,
        thread=st.sampled_from([5.0, 1.0, 0.4]),
    )
    def operator_changes_policy(self, person_day, person_month, install_day, install_month, thread: float) -> None:
        self.operator.set(
            thread=BudgetPolicy(max_budget_usd=thread, soft_threshold_usd=min(2.0, thread)),
            person_day_usd=person_day,
            person_month_usd=person_month,
            install_day_usd=install_day,
            install_month_usd=install_month,
        )

    @rule(on=st.booleans())
    def brake(self, on: bool) -> None:
        if on:
            self.store.freeze("operator", "test")
        else:
            self.store.unfreeze("operator")

    @rule(hours=st.sampled_from([1, 6, 30, 24 * 20]))
    def time_passes(self, hours: int) -> None:
        self.clock.now += hours * 3600


EXAMPLES = {"sqlite": 300, "postgres": 100}


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_no_window_passes_its_limit_whatever_the_order(kind: str, request: pytest.FixtureRequest) -> None:
    new_database = request.getfixturevalue("postgres_server").new_database if kind == "postgres" else None
    run_state_machine_as_test(
        lambda: ScopeMachine(new_database),
        settings=settings(
            max_examples=EXAMPLES[kind],
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
