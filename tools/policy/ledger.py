"""One job's attempts and what each cost, as the job and its report show them.

An immutable value (``record`` returns a new one) so it can live in LangGraph state. It decides
nothing: the spend store (``tools.policy.store``) holds the money a decision reads.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from tools.core.spec import AwareUTC


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
