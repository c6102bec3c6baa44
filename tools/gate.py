"""The FinOps gate: deterministic rules that decide whether money may be spent, and approvals bound to a spec.

Pure functions over pydantic values, no I/O: the agent's tools call them, and no text a model writes
reaches a branch. An approval records the hashes of the exact spec and estimate it was given for, so
any change to either voids it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.errors import GuardRefusal
from tools.spec import AwareUTC, BudgetPolicy, CostEstimate, TrainingSpec

AUTO_APPROVER = "policy:auto"
# Float sums of dollar amounts must not flip a decision at the exact limit.
MONEY_EPSILON = 1e-9


class GateOutcome(BaseModel):
    """What the gate decided, and the figures it decided on (shown in the report's Cost Gate Decision)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: Literal["approved", "refused", "needs_human"]
    reason: str
    estimate_usd: float
    spent_usd: float
    soft_threshold_usd: float
    max_budget_usd: float
    fits: bool
    decided_by: str | None = Field(default=None, description="'policy:auto' when the policy approved on its own.")


class ApprovalRecord(BaseModel):
    """Permission to spend up to approved_usd on exactly one spec and one estimate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: Literal["approve"] = "approve"
    decided_by: str = Field(pattern=r"^(policy|person):[A-Za-z0-9_.@-]+$")
    spec_hash: str = Field(min_length=1)
    estimate_hash: str = Field(min_length=1)
    approved_usd: float = Field(ge=0)
    timestamp: AwareUTC


def evaluate_gate(estimate: CostEstimate, policy: BudgetPolicy, spent_usd: float = 0.0) -> GateOutcome:
    """Refuse over the hard limit or when the job cannot fit; auto-approve at or under the soft threshold."""
    cost = estimate.estimated_cost_usd
    total = spent_usd + cost
    b = estimate.cost_breakdown

    def outcome(kind: Literal["approved", "refused", "needs_human"], reason: str) -> GateOutcome:
        return GateOutcome(
            outcome=kind,
            reason=reason,
            estimate_usd=cost,
            spent_usd=spent_usd,
            soft_threshold_usd=policy.soft_threshold_usd,
            max_budget_usd=policy.max_budget_usd,
            fits=b.fits,
            decided_by=AUTO_APPROVER if kind == "approved" else None,
        )

    spend = f"estimate ${cost:.2f}" + (f" plus ${spent_usd:.2f} already spent" if spent_usd else "")
    if total > policy.max_budget_usd + MONEY_EPSILON:
        return outcome("refused", f"{spend} exceeds the hard limit of ${policy.max_budget_usd:.2f}")
    if not b.fits:
        return outcome(
            "refused",
            f"the job does not fit: {estimate.estimated_vram_gb:.1f} GB needed per GPU, "
            f"{b.gpu_memory_gb:g} GB on {b.gpu}",
        )
    if total <= policy.soft_threshold_usd + MONEY_EPSILON and policy.allow_auto_approve:
        return outcome("approved", f"{spend} is within the soft threshold of ${policy.soft_threshold_usd:.2f}")
    if total <= policy.soft_threshold_usd + MONEY_EPSILON:
        return outcome("needs_human", f"{spend} is within the soft threshold, but auto-approve is off")
    return outcome(
        "needs_human",
        f"{spend} is above the soft threshold of ${policy.soft_threshold_usd:.2f} "
        f"(hard limit ${policy.max_budget_usd:.2f}); a person must approve",
    )


def grant_approval(
    spec: TrainingSpec, estimate: CostEstimate, decided_by: str, *, now: datetime | None = None
) -> ApprovalRecord:
    """Bind an approval to this exact spec and estimate."""
    return ApprovalRecord(
        decided_by=decided_by,
        spec_hash=spec.spec_hash(),
        estimate_hash=estimate.estimate_hash(),
        approved_usd=estimate.estimated_cost_usd,
        timestamp=now or datetime.now(UTC),
    )


def check_approval(approval: ApprovalRecord | None, spec: TrainingSpec, estimate: CostEstimate) -> None:
    """Raise GuardRefusal unless the approval was given for this spec and this estimate."""
    if approval is None:
        raise GuardRefusal("no approval: the run needs an approval from the cost gate before it can start")
    if approval.spec_hash != spec.spec_hash():
        raise GuardRefusal(
            "approval was for a different spec (spec changed after approval); estimate and ask for approval again"
        )
    if approval.estimate_hash != estimate.estimate_hash():
        raise GuardRefusal("estimate changed since the approval; ask for approval again")
