"""Money spent so far, attempt by attempt: failed attempts cost money too and count against the budget.

The ledger is an immutable value (``record`` returns a new one) so it can live in LangGraph state.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from tools.errors import GuardRefusal
from tools.gate import MONEY_EPSILON
from tools.spec import AwareUTC, BudgetPolicy


class SpendEntry(BaseModel):
    """One attempt's estimated and actual cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempt: int = Field(ge=1)
    run_id: str | None = None
    status: str = Field(min_length=1)
    estimated_usd: float = Field(ge=0)
    actual_usd: float = Field(ge=0)
    timestamp: AwareUTC = Field(default_factory=lambda: datetime.now(UTC))


class SpendLedger(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    entries: tuple[SpendEntry, ...] = ()

    @property
    def spent_usd(self) -> float:
        """Actual spend of every attempt, failed ones included."""
        return sum(entry.actual_usd for entry in self.entries)

    def record(
        self,
        *,
        attempt: int,
        status: str,
        estimated_usd: float,
        actual_usd: float,
        run_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> SpendLedger:
        """A new ledger with one more entry; this one is unchanged."""
        entry = SpendEntry(
            attempt=attempt,
            run_id=run_id,
            status=status,
            estimated_usd=estimated_usd,
            actual_usd=actual_usd,
            timestamp=timestamp or datetime.now(UTC),
        )
        return SpendLedger(entries=(*self.entries, entry))


def check_can_spend(ledger: SpendLedger, policy: BudgetPolicy, next_estimate_usd: float) -> None:
    """Raise GuardRefusal when what was spent plus the next attempt's estimate would pass the hard limit."""
    spent = ledger.spent_usd
    if spent + next_estimate_usd > policy.max_budget_usd + MONEY_EPSILON:
        raise GuardRefusal(
            f"over budget: ${spent:.2f} already spent plus ${next_estimate_usd:.2f} for the next attempt "
            f"exceeds the hard limit of ${policy.max_budget_usd:.2f}"
        )
