"""The spend report adds up the store's own ledger: per person, day, thread, model and GPU, billed, held and refused
apart, with the limits in force and what each has left; the chart is a real PNG of the same figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tools.core.errors import AegisError, GuardRefusal
from tools.core.money import usd
from tools.policy.records import Brake, LedgerRow, SpendKind
from tools.policy.scopes import OperatorPolicy, Scope, ScopeLimits
from tools.policy.spend_report import (
    UNNAMED,
    GroupBy,
    brake_words,
    build_report,
    day_start,
    group_rows,
    month_start,
    parse_day,
    total,
)
from tools.policy.store import SpendStore
from tools.report.spend_chart import plot_spend

from .test_store import POLICY, bound, priced

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PER_S = 0.001
FEB_27 = datetime(2025, 2, 27, 9, tzinfo=UTC).timestamp()
MAR_3 = datetime(2025, 3, 3, 10, tzinfo=UTC).timestamp()
MAR_4 = datetime(2025, 3, 4, 23, 59, tzinfo=UTC).timestamp()
OPERATOR = OperatorPolicy(scopes=ScopeLimits(person_month_usd=20.0, install_month_usd=50.0))


@dataclass
class Clock:
    now: float = MAR_3

    def __call__(self) -> float:
        return self.now


def row(kind: SpendKind, usd: float, *, person: str = "alice", at: float = MAR_3, **kw: str) -> LedgerRow:
    values = {"thread_id": "t1", "job_id": "j1", "model": "smollm2", "gpu": "a10g", **kw}
    return LedgerRow(kind=kind, usd=usd, person=person, at=at, **values)


def granted(store: SpendStore, job: str, thread: str, person: str) -> str:
    """A job opened for a person, approved by policy: its grant's id."""
    store.open_job(job, thread, POLICY, max_retries=3, person=person)
    est = priced(0.5)
    _, grant = store.grant_by_policy(job, bound(est), est)
    assert grant is not None
    return grant.grant_id


def start(store: SpendStore, job: str, grant_id: str, *, model: str, gpu: str):
    return store.start_attempt(
        job,
        grant_id=grant_id,
        binding=bound(priced(0.5)),
        estimated_seconds=600.0,
        price_usd_per_s=PER_S,
        default_timeout_s=1800.0,
        owner_pid=1,
        model=model,
        gpu=gpu,
    )


def attempt(store: SpendStore, job: str, thread: str, person: str, *, model: str, gpu: str, billed: float | None):
    """One job with one attempt, started at the store's clock through the store's own methods; billed or held."""
    ticket = start(store, job, granted(store, job, thread, person), model=model, gpu=gpu)
    if billed is not None:
        store.capture(ticket.attempt_id, billed, "succeeded")
    return ticket


def fill(path: Path, operator: OperatorPolicy = OPERATOR) -> SpendStore:
    """Three persons over three days: billed, one still running, one refused by the brake, one last month."""
    clock = Clock(FEB_27)
    store = SpendStore(path, operator=lambda: operator, clock=clock)
    attempt(store, "j0", "t0", "alice", model="smollm2", gpu="a10g", billed=9.0)  # February: outside March
    clock.now = MAR_3
    attempt(store, "j1", "t1", "alice", model="smollm2", gpu="a10g", billed=0.40)
    clock.now = MAR_4
    attempt(store, "j2", "t2", "alice", model="smollm2", gpu="h100", billed=1.10)
    attempt(store, "j3", "t3", "bob", model="tinyllama", gpu="a10g", billed=None)
    grant_id = granted(store, "j4", "t4", "carol")
    store.freeze("ops", "audit")
    with pytest.raises(GuardRefusal, match="frozen"):
        start(store, "j4", grant_id, model="tinyllama", gpu="h100")
    store.unfreeze("ops")
    return store


@pytest.fixture
def store(tmp_path: Path) -> SpendStore:
    return fill(tmp_path / "spend.sqlite")


# ---- pure ----------------------------------------------------------------------------------------------------


def test_days_parse_strictly_and_months_start_in_utc() -> None:
    assert parse_day("2025-03-01") == date(2025, 3, 1)
    for bad in ("2025-13-01", "03/01/2025", "2025-3-1", "yesterday", ""):
        with pytest.raises(AegisError, match="YYYY-MM-DD") as caught:
            parse_day(bad)
        assert caught.value.exit_code == 2
    assert month_start(MAR_4) == date(2025, 3, 1)
    assert month_start(datetime(2025, 3, 31, 23, 30, tzinfo=UTC).timestamp()) == date(2025, 3, 1)
    assert day_start(date(2025, 3, 3)) == datetime(2025, 3, 3, tzinfo=UTC).timestamp()


def test_rows_add_up_per_group_with_each_kind_apart() -> None:
    rows = [
        row(SpendKind.CAPTURED, 0.4),
        row(SpendKind.CAPTURED, 1.1, at=MAR_4, gpu="h100"),
        row(SpendKind.HELD, 1.83, person="bob", at=MAR_4),
        row(SpendKind.REFUSED, 0.6, person="carol", at=MAR_4, scope="freeze"),
        row(SpendKind.CAPTURED, 0.2, person="", model="", gpu=""),
    ]
    by_person = {g.group: g for g in group_rows(rows, GroupBy.PERSON)}
    assert by_person["alice"].captured_usd == pytest.approx(1.5) and by_person["alice"].held_usd == 0
    assert by_person["bob"].held_usd == pytest.approx(1.83) and by_person["carol"].refused_usd == pytest.approx(0.6)
    assert by_person[UNNAMED].captured_usd == pytest.approx(0.2)
    assert [g.group for g in group_rows(rows, GroupBy.PERSON)][0] == "bob"  # the largest first
    days = group_rows(rows, GroupBy.DAY)
    assert [g.group for g in days] == ["2025-03-03", "2025-03-04"]  # in order, UTC
    assert days[1].captured_usd == pytest.approx(1.1) and days[1].refused_usd == pytest.approx(0.6)
    assert {g.group for g in group_rows(rows, GroupBy.GPU)} == {"a10g", "h100", UNNAMED}
    assert {g.group for g in group_rows(rows, GroupBy.MODEL)} == {"smollm2", UNNAMED}
    assert [g.group for g in group_rows(rows, GroupBy.THREAD)] == ["t1"]
    sums = total(group_rows(rows, GroupBy.GPU))
    assert (sums.captured_usd, sums.held_usd, sums.refused_usd) == pytest.approx((1.7, 1.83, 0.6))
    assert sums.committed_usd == pytest.approx(3.53)


def test_the_brake_in_words() -> None:
    assert brake_words(Brake()) == "spending is open; every limit applies"
    frozen = brake_words(Brake(frozen=True, stop_running=True, reason="audit", decided_by="ops", changed=MAR_3))
    assert "FROZEN by ops at 2025-03-03 10:00 UTC (audit)" in frozen and "being stopped" in frozen
    assert "unfrozen by ops" in brake_words(Brake(frozen=False, reason="unfrozen", decided_by="ops", changed=MAR_4))


# ---- from the store --------------------------------------------------------------------------------------------


def test_the_report_is_the_store_ledger_added_up(store: SpendStore) -> None:
    report = build_report(store, GroupBy.PERSON, date(2025, 3, 1))
    ledger = store.ledger(day_start(date(2025, 3, 1)))
    for kind, field in ((SpendKind.CAPTURED, "captured_usd"), (SpendKind.HELD, "held_usd")):
        assert getattr(report.totals, field) == pytest.approx(sum(r.usd for r in ledger if r.kind is kind))
    assert report.totals.refused_usd == pytest.approx(sum(r.usd for r in ledger if r.kind is SpendKind.REFUSED))
    groups = {g.group: g for g in report.groups}
    assert set(groups) == {"alice", "bob", "carol"}  # February's $9 is not in March
    assert groups["alice"].captured_usd == pytest.approx(1.5)
    [held] = [a for a in store.attempts() if a.person == "bob"]
    assert groups["bob"].held_usd == pytest.approx(held.held_usd) and groups["bob"].captured_usd == 0
    assert groups["carol"].refused_usd == pytest.approx(600 * PER_S) and groups["carol"].committed_usd == 0
    assert report.since == date(2025, 3, 1) and not report.brake.frozen and report.brake.decided_by == "ops"


def test_the_default_start_is_this_month_by_the_store_clock(store: SpendStore) -> None:
    report = build_report(store, GroupBy.DAY)
    assert report.since == date(2025, 3, 1)
    assert [g.group for g in report.groups] == ["2025-03-03", "2025-03-04"]
    everything = build_report(store, GroupBy.DAY, date(2025, 1, 1))
    assert everything.groups[0].group == "2025-02-27" and everything.groups[0].captured_usd == pytest.approx(9.0)


def test_the_limits_in_force_say_what_is_left(store: SpendStore) -> None:
    report = build_report(store, GroupBy.GPU, date(2025, 3, 1))
    named = {(limit.scope, limit.person): limit for limit in report.limits}
    assert set(named) == {
        (Scope.PERSON_MONTH, "alice"),
        (Scope.PERSON_MONTH, "bob"),
        (Scope.PERSON_MONTH, "carol"),
        (Scope.INSTALL_MONTH, ""),
    }
    alice = named[(Scope.PERSON_MONTH, "alice")]
    assert alice.committed_usd == pytest.approx(1.5) and alice.left_usd == pytest.approx(18.5)
    assert alice.name == "alice's monthly limit" and "$18.50 left" in alice.said
    install = named[(Scope.INSTALL_MONTH, "")]
    assert install.committed_usd == pytest.approx(report.totals.committed_usd)
    assert install.left_usd == pytest.approx(50.0 - report.totals.committed_usd)
    assert report.limits[-1].scope is Scope.INSTALL_MONTH  # the person's limits first, then the installation's


def test_without_operator_limits_the_conversation_limit_is_named(tmp_path: Path) -> None:
    store = fill(tmp_path / "spend.sqlite", OperatorPolicy())
    report = build_report(store, GroupBy.PERSON, date(2025, 3, 1))
    assert report.limits == []
    assert report.limit_lines() == [
        f"no limits beyond each conversation's {usd(OperatorPolicy().thread.max_budget_usd)}"
    ]


def test_nobody_spent_the_viewer_limits_still_show(tmp_path: Path) -> None:
    store = SpendStore(tmp_path / "spend.sqlite", operator=lambda: OPERATOR, clock=Clock())
    report = build_report(store, GroupBy.PERSON, viewer="dana")
    assert report.groups == [] and report.totals.committed_usd == 0
    assert {(limit.scope, limit.person) for limit in report.limits} == {
        (Scope.PERSON_MONTH, "dana"),
        (Scope.INSTALL_MONTH, ""),
    }


def test_the_chart_is_a_png(store: SpendStore, tmp_path: Path) -> None:
    for by in GroupBy:
        path = plot_spend(build_report(store, by, date(2025, 3, 1)), tmp_path / "charts" / f"spend-{by}.png")
        assert path.read_bytes().startswith(PNG_MAGIC) and path.stat().st_size > 5_000
    empty = build_report(store, GroupBy.PERSON, date(2030, 1, 1))
    assert plot_spend(empty, tmp_path / "empty.png").read_bytes().startswith(PNG_MAGIC)
