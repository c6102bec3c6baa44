"""Checkpoints that bound what a failure can cost, and the resume point a retry starts from.

The interval comes from the estimate: a checkpoint every ``share`` of the planned steps means a failure
loses at most that share of the run's cost. A retry resumes from the last good checkpoint when the healed
spec trains the same parameters with the same effective batch (so the optimizer state and the data
order stay valid); the price of the retry is then that of the steps left, and the rest is money saved.
Finding that checkpoint on disk is ``tools.run.checkpoint_files``'s: this module reads nothing.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from tools.core.money import usd
from tools.core.settings import settings
from tools.core.spec import CostEstimate, TrainingSpec

DEFAULT_MAX_LOSS_SHARE = 0.1
# Fields a retry may change and still continue the same optimisation from a checkpoint.
RESUMABLE_CHANGES = frozenset(
    {"learning_rate", "micro_batch_size", "gradient_accumulation_steps", "gradient_checkpointing"}
)


class ResumePoint(BaseModel):
    """Where the next attempt starts, and what starting there instead of step 0 saves."""

    model_config = ConfigDict(extra="forbid")

    step: int = Field(ge=1)
    path: str
    from_attempt: int = Field(ge=1)
    loss: float | None = None
    saved_usd: float = 0.0
    saved_seconds: float = 0.0


def max_loss_share() -> float:
    """The largest share of a run's cost one failure may lose: AEGIS_MAX_LOSS_SHARE, 10% by default."""
    return settings().max_loss_share


def checkpoint_interval(total_steps: int, share: float) -> int | None:
    """Steps between checkpoints so a failure loses at most ``share`` of the steps; None when there is nothing to save."""
    if total_steps < 2:
        return None
    return max(1, math.floor(total_steps * share))


def can_resume(old: TrainingSpec, new: TrainingSpec) -> bool:
    """True when the healed spec can continue the old one's optimisation: same parameters, same effective batch."""
    before, after = old.model_dump(), new.model_dump()
    changed = {key for key, value in after.items() if before[key] != value}
    return changed <= RESUMABLE_CHANGES and old.effective_batch_size == new.effective_batch_size


def price_resumed(
    estimate: CostEstimate, resume_step: int, startup_seconds: float
) -> tuple[CostEstimate, float, float]:
    """The estimate for the steps after ``resume_step`` only; returns it with the seconds and dollars saved."""
    bd = estimate.cost_breakdown
    total = max(bd.total_steps, 1)
    done = min(resume_step, total)
    variable = max(bd.estimated_seconds - startup_seconds, 0.0)
    saved_seconds = variable * done / total
    seconds = bd.estimated_seconds - saved_seconds
    scale = seconds / bd.estimated_seconds if bd.estimated_seconds > 0 else 1.0
    cost = estimate.estimated_cost_usd * scale
    note = (
        f"resumes from the checkpoint at step {done} of {total}: prices the {total - done} steps left, "
        f"{usd(estimate.estimated_cost_usd - cost)} and {saved_seconds / 60:.1f} min less than a restart"
    )
    breakdown = bd.model_copy(update={"estimated_seconds": seconds, "notes": [*bd.notes, note]})
    resumed = estimate.model_copy(
        update={
            "estimated_cost_usd": cost,
            "estimated_duration_min": seconds / 60,
            "cost_breakdown": breakdown,
        }
    )
    return resumed, saved_seconds, estimate.estimated_cost_usd - cost
