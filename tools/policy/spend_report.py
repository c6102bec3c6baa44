"""Where the money went: the spend store's ledger added up per person, day, thread, model or GPU, beside the limits
in force and what each has left. Read from the store only (never from logs): what a report says was billed is
what the store captured, so the report and the money decisions can never disagree.

Days and months are UTC, as the store's windows are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from tools.core.errors import AegisError
from tools.core.money import usd
from tools.policy.records import Brake, LedgerRow, SpendKind
from tools.policy.scopes import Scope, ScopeMoney
from tools.policy.store import SpendStore

DAY_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
PERSON_SCOPES = (Scope.PERSON_DAY, Scope.PERSON_MONTH)
UNNAMED = "(unknown)"  # rows from stores older than persons, models and GPUs carry ''


class GroupBy(StrEnum):
    PERSON = "person"
    DAY = "day"
    THREAD = "thread"
    MODEL = "model"
    GPU = "gpu"


class SpendSums(BaseModel):
    """Money in three kinds that must never be added blindly: billed, reserved by running attempts, refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    captured_usd: float = 0.0
    held_usd: float = 0.0
    refused_usd: float = 0.0

    @property
    def committed_usd(self) -> float:
        """What counts against a limit: billed plus held (refused money was never spent)."""
        return self.captured_usd + self.held_usd

    def plus(self, row: LedgerRow) -> SpendSums:
        field = {SpendKind.CAPTURED: "captured_usd", SpendKind.HELD: "held_usd", SpendKind.REFUSED: "refused_usd"}
        name = field[row.kind]
        return self.model_copy(update={name: getattr(self, name) + row.usd})


class SpendGroup(SpendSums):
    group: str


class LimitLeft(BaseModel):
    """One operator limit in force now, what its window holds and what is left in it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: Scope
    name: str
    person: str = ""
    limit_usd: float
    committed_usd: float
    left_usd: float
    said: str

    @classmethod
    def of(cls, money: ScopeMoney) -> LimitLeft:
        return cls(
            scope=money.scope,
            name=money.name,
            person=money.person if money.scope in PERSON_SCOPES else "",
            limit_usd=money.limit_usd,
            committed_usd=money.committed_usd,
            left_usd=money.left_usd,
            said=f"{money.describe()}; {usd(money.left_usd)} left",
        )


class SpendReport(BaseModel):
    """The report as `aegis spend --json` prints it and the chart and the chat page draw it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    by: GroupBy
    since: date
    groups: list[SpendGroup]
    totals: SpendSums
    limits: list[LimitLeft]
    brake: Brake
    chart: str | None = None
    conversation_limit_usd: float

    def limit_lines(self) -> list[str]:
        """Each limit and what is left, in words; when the operator set none, the one every conversation has."""
        if not self.limits:
            return [f"no limits beyond each conversation's {usd(self.conversation_limit_usd)}"]
        return [limit.said for limit in self.limits]

    def brake_line(self) -> str:
        return brake_words(self.brake)


def parse_day(text: str) -> date:
    """A day as YYYY-MM-DD (UTC), or an AegisError (exit code 2) that says how to write it."""
    try:
        if DAY_PATTERN.fullmatch(text.strip()):
            return date.fromisoformat(text.strip())
    except ValueError:
        pass
    raise AegisError(f"'{text}' is not a day: write it as YYYY-MM-DD (UTC), e.g. 2025-01-31")


def month_start(now: float) -> date:
    """The first day of the month that ``now`` falls in, in UTC: the default start of a report."""
    return datetime.fromtimestamp(now, UTC).date().replace(day=1)


def day_start(day: date) -> float:
    """Midnight UTC at the start of ``day``, in seconds since the epoch (what the ledger's ``at`` is in)."""
    return datetime.combine(day, time.min, tzinfo=UTC).timestamp()


def group_key(row: LedgerRow, by: GroupBy) -> str:
    if by is GroupBy.DAY:
        return datetime.fromtimestamp(row.at, UTC).date().isoformat()
    value = {GroupBy.PERSON: row.person, GroupBy.THREAD: row.thread_id, GroupBy.MODEL: row.model, GroupBy.GPU: row.gpu}
    return value[by] or UNNAMED


def group_rows(rows: Iterable[LedgerRow], by: GroupBy) -> list[SpendGroup]:
    """The rows added up per group: days in order, anything else the largest spender first."""
    sums: dict[str, SpendSums] = {}
    for row in rows:
        key = group_key(row, by)
        sums[key] = sums.get(key, SpendSums()).plus(row)
    groups = [SpendGroup(group=key, **s.model_dump()) for key, s in sums.items()]
    if by is GroupBy.DAY:
        return sorted(groups, key=lambda g: g.group)
    return sorted(groups, key=lambda g: (-(g.committed_usd + g.refused_usd), g.group))


def total(groups: Iterable[SpendSums]) -> SpendSums:
    said = list(groups)
    return SpendSums(
        captured_usd=sum(g.captured_usd for g in said),
        held_usd=sum(g.held_usd for g in said),
        refused_usd=sum(g.refused_usd for g in said),
    )


def limits_in_force(store: SpendStore, persons: Iterable[str]) -> list[LimitLeft]:
    """The operator's limits for each of these persons and for the installation, each once."""
    seen: dict[tuple[Scope, str], LimitLeft] = {}
    for person in persons:
        for money in store.limits_now(person):
            limit = LimitLeft.of(money)
            seen.setdefault((limit.scope, limit.person), limit)
    order = list(Scope)
    return sorted(seen.values(), key=lambda limit: (order.index(limit.scope), limit.person))


def build_report(store: SpendStore, by: GroupBy, since: date | None = None, *, viewer: str = "") -> SpendReport:
    """The report from the store now: the ledger since ``since`` (default: this month, UTC) and the limits in force
    for every person in it (the viewer's when nobody spent)."""
    since = since or month_start(store.clock())
    rows = store.ledger(day_start(since))
    groups = group_rows(rows, by)
    persons = sorted({row.person for row in rows if row.person}) or ([viewer] if viewer else [])
    return SpendReport(
        by=by,
        since=since,
        groups=groups,
        totals=total(groups),
        limits=limits_in_force(store, persons),
        brake=store.brake(),
        conversation_limit_usd=store.operator().thread.max_budget_usd,
    )


def brake_words(brake: Brake) -> str:
    """What the operator's brake says now, in one line."""
    when = f" at {datetime.fromtimestamp(brake.changed, UTC):%Y-%m-%d %H:%M} UTC" if brake.changed else ""
    if brake.frozen:
        running = "running attempts are being stopped too" if brake.stop_running else "running attempts may finish"
        return (
            f"spending is FROZEN by {brake.decided_by or 'the operator'}{when} "
            f"({brake.reason or 'no reason given'}): no new attempt may start anywhere; {running}"
        )
    if brake.decided_by:
        return f"spending is open (unfrozen by {brake.decided_by}{when}); every limit applies"
    return "spending is open; every limit applies"
