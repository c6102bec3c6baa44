"""Whose money a decision spends: the operator's limits per thread, per person and for the installation, per day
and per month, and what each window already holds. Pure values and rules; the store reads the sums in the
transaction that decides, so a window cannot fill between the check and the start.

Windows are calendar days and months in UTC, counted by when an attempt started: a captured attempt counts what
it billed, a running one what it holds.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.core.errors import SpecError
from tools.core.money import MONEY_EPSILON, usd
from tools.core.spec import SCOPE_LIMIT_KEYS, BudgetPolicy, format_validation_error, operator_budget


class Scope(StrEnum):
    THREAD = "thread"
    PERSON_DAY = "person_day"
    PERSON_MONTH = "person_month"
    INSTALL_DAY = "install_day"
    INSTALL_MONTH = "install_month"


SAID = {
    Scope.THREAD: ("this conversation's limit", "in it"),
    Scope.PERSON_DAY: ("{person}'s daily limit", "today"),
    Scope.PERSON_MONTH: ("{person}'s monthly limit", "this month"),
    Scope.INSTALL_DAY: ("the installation's daily limit", "by everyone today"),
    Scope.INSTALL_MONTH: ("the installation's monthly limit", "by everyone this month"),
}


class ScopeLimits(BaseModel):
    """The operator's limits beyond one conversation; None: no limit in that scope."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    person_day_usd: float | None = Field(default=None, ge=0)
    person_month_usd: float | None = Field(default=None, ge=0)
    install_day_usd: float | None = Field(default=None, ge=0)
    install_month_usd: float | None = Field(default=None, ge=0)

    def limit(self, scope: Scope) -> float | None:
        return None if scope is Scope.THREAD else getattr(self, f"{scope.value}_usd")


class OperatorPolicy(BaseModel):
    """What the operator's budget file and AEGIS_* variables say now: read at every money decision."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    thread: BudgetPolicy = BudgetPolicy()
    scopes: ScopeLimits = ScopeLimits()

    @classmethod
    def from_config(cls) -> OperatorPolicy:
        values = operator_budget()
        try:
            scopes = ScopeLimits.model_validate({key: values[key] for key in SCOPE_LIMIT_KEYS if key in values})
        except ValidationError as exc:
            raise SpecError(format_validation_error(exc, "budget policy")) from None
        return cls(thread=BudgetPolicy.from_values(values), scopes=scopes)


class ScopeMoney(BaseModel):
    """One limit that applies to a decision, and what its window already holds (captured + held)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: Scope
    person: str = ""
    limit_usd: float
    committed_usd: float

    @property
    def left_usd(self) -> float:
        return max(0.0, self.limit_usd - self.committed_usd)

    @property
    def name(self) -> str:
        return SAID[self.scope][0].format(person=self.person or "this person")

    def describe(self) -> str:
        """'alice's monthly limit: $40.00, $38.90 spent or held this month'."""
        return f"{self.name}: {usd(self.limit_usd)}, {usd(self.committed_usd)} spent or held {SAID[self.scope][1]}"

    def passed_by(self, more_usd: float) -> bool:
        return self.committed_usd + more_usd > self.limit_usd + MONEY_EPSILON


class AttemptCost(BaseModel):
    """What an attempt about to start costs: its estimated time, its stated price and its default time limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seconds: float
    price: float
    default_timeout_s: float


def window_start(scope: Scope, now: float) -> float:
    """When the scope's current window opened (UTC); a thread's window is its whole life."""
    moment = datetime.fromtimestamp(now, UTC)
    if scope in (Scope.PERSON_DAY, Scope.INSTALL_DAY):
        return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    if scope in (Scope.PERSON_MONTH, Scope.INSTALL_MONTH):
        return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
    return -math.inf


def stricter(job: BudgetPolicy, operator: BudgetPolicy) -> BudgetPolicy:
    """The policy in force: the job's as opened, lowered by whatever the operator's says now (never raised)."""
    hard = min(job.max_budget_usd, operator.max_budget_usd)
    return BudgetPolicy(
        max_budget_usd=hard,
        soft_threshold_usd=min(job.soft_threshold_usd, operator.soft_threshold_usd, hard),
        allow_auto_approve=job.allow_auto_approve and operator.allow_auto_approve,
    )


def first_passed(scopes: list[ScopeMoney], more_usd: float) -> ScopeMoney | None:
    """The scope that more_usd on top of what it holds would pass (the one with least left), else None."""
    passed = [s for s in scopes if s.passed_by(more_usd)]
    return min(passed, key=lambda s: s.left_usd) if passed else None


def tightest(scopes: list[ScopeMoney]) -> ScopeMoney | None:
    return min(scopes, key=lambda s: s.left_usd) if scopes else None
