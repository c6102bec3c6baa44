"""Estimates that learn from actuals.

Every attempt's estimated and measured time, peak memory and cost go to a local ledger
(``$AEGIS_HOME/actuals.jsonl``, append-only; written and read by ``tools.run.actuals_log``). A new estimate for the same GPU kind shows the
recent error, and once there are enough finished runs it is corrected by their median ratio,
saying so. Only finished attempts teach: a failed one stopped early and would bias the ratio.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from tools.core.money import usd
from tools.core.spec import AwareUTC, CostEstimate
from tools.core.status import AttemptStatus

WINDOW = 5
MIN_RUNS_FOR_CORRECTION = 3


class ActualRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timestamp: AwareUTC = Field(default_factory=lambda: datetime.now(UTC))
    run_id: str
    attempt: int
    gpu: str
    status: str
    estimated_seconds: float
    actual_seconds: float
    estimated_memory_gb: float
    actual_memory_gb: float
    estimated_cost_usd: float
    actual_cost_usd: float


class Learned(BaseModel):
    """The recent error for one GPU kind: measured / estimated, medians over the last runs."""

    model_config = ConfigDict(extra="forbid")

    gpu: str
    runs: int
    time_ratio: float
    memory_ratio: float


def learned_error(records: list[ActualRecord], gpu: str, window: int = WINDOW) -> Learned | None:
    """Median measured/estimated ratios over the last ``window`` finished runs on this GPU kind."""
    done = [r for r in records if r.gpu == gpu and r.status == AttemptStatus.SUCCEEDED and r.estimated_seconds > 0]
    recent = done[-window:]
    if not recent:
        return None
    memory = [
        r.actual_memory_gb / r.estimated_memory_gb
        for r in recent
        if r.estimated_memory_gb > 0 and r.actual_memory_gb > 0
    ]
    return Learned(
        gpu=gpu,
        runs=len(recent),
        time_ratio=statistics.median(r.actual_seconds / r.estimated_seconds for r in recent),
        memory_ratio=statistics.median(memory) if memory else 1.0,
    )


def apply_learning(estimate: CostEstimate, learned: Learned | None) -> CostEstimate:
    """Add the recent error to the estimate's notes; correct its time and cost once enough runs agree."""
    if learned is None:
        return estimate
    bd = estimate.cost_breakdown
    notes = [
        *bd.notes,
        f"the last {learned.runs} {learned.gpu} runs took {learned.time_ratio:.2f}x the estimated time "
        f"(peak memory {learned.memory_ratio:.2f}x)",
    ]
    if learned.runs < MIN_RUNS_FOR_CORRECTION:
        notes.append(f"no correction applied: fewer than {MIN_RUNS_FOR_CORRECTION} finished runs")
        return estimate.model_copy(update={"cost_breakdown": bd.model_copy(update={"notes": notes})})
    seconds = bd.estimated_seconds * learned.time_ratio
    notes.append(
        f"corrected by {learned.time_ratio:.2f}x from the ledger: {bd.estimated_seconds:.0f} s → {seconds:.0f} s, "
        f"{usd(estimate.estimated_cost_usd)} → {usd(estimate.estimated_cost_usd * learned.time_ratio)}"
    )
    breakdown = bd.model_copy(update={"notes": notes, "estimated_seconds": seconds})
    return estimate.model_copy(
        update={
            "cost_breakdown": breakdown,
            "estimated_duration_min": seconds / 60.0,
            "estimated_cost_usd": estimate.estimated_cost_usd * learned.time_ratio,
        }
    )
