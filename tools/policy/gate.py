"""The FinOps gate's rules and an attempt's money limits: pure functions over values, no I/O.

The spend store (``tools.policy.store``) applies them inside its transactions, with the thread's
money read in the same transaction, so no text a model writes and no second process reaches a branch.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.core.isolation import Placement
from tools.core.money import HOLD_MARGIN_S, MIN_TIME_COVER, MONEY_EPSILON, usd
from tools.core.settings import settings
from tools.core.spec import AwareUTC, BudgetPolicy, CostEstimate
from tools.core.status import GateVerdict
from tools.policy.scopes import Scope, ScopeMoney, first_passed

AUTO_APPROVER = "policy:auto"
DECIDER_PATTERN = r"^(policy|person):[A-Za-z0-9_.@-]+$"


class GateOutcome(BaseModel):
    """What the gate decided, and the figures it decided on (shown in the report's Cost Gate Decision)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: GateVerdict
    reason: str
    estimate_usd: float
    spent_usd: float = Field(description="Money captured and held in the thread when the gate decided.")
    soft_threshold_usd: float
    max_budget_usd: float
    fits: bool
    decided_by: str | None = Field(default=None, description="'policy:auto' when the policy approved on its own.")
    scopes: list[ScopeMoney] = Field(default_factory=list, description="Every limit that applied, and what it held.")
    refused_by: str = Field(
        default="", description="For a refusal for money: the scope that refused, or 'freeze' for the brake."
    )


class ApprovalRecord(BaseModel):
    """A grant as the job shows it: one attempt of exactly one spec, estimate and data, up to approved_usd."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: Literal["approve"] = "approve"
    grant_id: str = Field(min_length=1)
    decided_by: str = Field(pattern=DECIDER_PATTERN)
    spec_hash: str = Field(min_length=1)
    estimate_hash: str = Field(min_length=1)
    data_digest: str = Field(min_length=1)
    approved_usd: float = Field(ge=0)
    timestamp: AwareUTC


class AttemptLimits(BaseModel):
    """When an attempt is stopped, and so the most it can bill: what its hold reserves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(gt=0)
    hold_usd: float = Field(ge=0)
    budget_capped: bool = Field(description="True when the money left, not the default limit, set the timeout.")


def placement_refusal(place: Placement) -> str | None:
    """Why a run cannot start where it was placed, before any money: no backend, or remote code or an operator
    that needs isolation where there is none."""
    if place.backend is None:
        return f"nothing here can run it: {place.hint}"
    where = place.isolation.describe() if place.isolation else "isolation: unknown"
    if not place.isolated and place.trust_remote_code:
        return f"the model ships its own code, which runs only isolated, and {where}"
    if not place.isolated and settings().require_isolation:
        return f"AEGIS_REQUIRE_ISOLATION is set and {where}"
    return None


def evaluate_gate(
    estimate: CostEstimate,
    policy: BudgetPolicy,
    spent_usd: float = 0.0,
    min_hold_usd: float = 0.0,
    *,
    scopes: list[ScopeMoney] | None = None,
    frozen: str | None = None,
) -> GateOutcome:
    """Refuse over any limit, while the operator's brake is on, or when the job cannot fit; auto-approve at or
    under the soft threshold.

    min_hold_usd: the least the attempt's time limit can bill (``minimum_hold_usd``): the money left must cover
    it. scopes: every limit with what its window holds; frozen: the brake's refusal when it is on.
    """
    cost = estimate.estimated_cost_usd
    total = spent_usd + cost
    b = estimate.cost_breakdown

    def outcome(kind: GateVerdict, reason: str, refused_by: str = "") -> GateOutcome:
        return GateOutcome(
            outcome=kind,
            reason=reason,
            estimate_usd=cost,
            spent_usd=spent_usd,
            soft_threshold_usd=policy.soft_threshold_usd,
            max_budget_usd=policy.max_budget_usd,
            fits=b.fits,
            decided_by=AUTO_APPROVER if kind is GateVerdict.APPROVED else None,
            scopes=scopes or [],
            refused_by=refused_by,
        )

    spend = f"estimate {usd(cost)}" + (f" plus {usd(spent_usd)} already spent or held" if spent_usd else "")
    place = estimate.placement or Placement(hint="it was never placed on a backend")
    if (refused := placement_refusal(place)) is not None:
        return outcome(GateVerdict.REFUSED, refused)
    if by := (FROZEN, frozen) if frozen else money_refusal(cost, policy, spent_usd, min_hold_usd, scopes or []):
        return outcome(GateVerdict.REFUSED, by[1], by[0])
    if not b.fits:
        return outcome(
            GateVerdict.REFUSED,
            f"the job does not fit: {estimate.estimated_vram_gb:.1f} GB needed per GPU, "
            f"{b.gpu_memory_gb:g} GB on {b.gpu}",
        )
    if place.trust_remote_code:
        where = place.isolation.describe() if place.isolation else "isolation: unknown"
        said = f"the model ships its own code, which the run executes ({where}): {place.code_files()}"
        return outcome(GateVerdict.NEEDS_HUMAN, f"{said}; a person must approve")
    if total <= policy.soft_threshold_usd + MONEY_EPSILON and policy.allow_auto_approve:
        return outcome(
            GateVerdict.APPROVED, f"{spend} is within the soft threshold of {usd(policy.soft_threshold_usd)}"
        )
    if total <= policy.soft_threshold_usd + MONEY_EPSILON:
        return outcome(GateVerdict.NEEDS_HUMAN, f"{spend} is within the soft threshold, but auto-approve is off")
    return outcome(
        GateVerdict.NEEDS_HUMAN,
        f"{spend} is above the soft threshold of {usd(policy.soft_threshold_usd)} "
        f"(hard limit {usd(policy.max_budget_usd)}); a person must approve",
    )


FROZEN = "freeze"  # what a refusal by the operator's brake is booked under


def money_refusal(
    cost: float, policy: BudgetPolicy, spent_usd: float, min_hold_usd: float, scopes: list[ScopeMoney]
) -> tuple[str, str] | None:
    """Which scope (its value) the money refuses in, and why: a wider scope the attempt's most would pass, or the thread's
    hard limit."""
    wider = [s for s in scopes if s.scope is not Scope.THREAD]
    if (scope := first_passed(wider, max(cost, min_hold_usd))) is not None:
        most = usd(max(cost, min_hold_usd))
        return scope.scope.value, f"{scope.describe()}; this attempt may bill up to {most} (estimate {usd(cost)})"
    if spent_usd + cost > policy.max_budget_usd + MONEY_EPSILON:
        spend = f"estimate {usd(cost)}" + (f" plus {usd(spent_usd)} already spent or held" if spent_usd else "")
        return Scope.THREAD.value, f"{spend} exceeds the hard limit of {usd(policy.max_budget_usd)}"
    if spent_usd + min_hold_usd > policy.max_budget_usd + MONEY_EPSILON:
        return Scope.THREAD.value, (
            f"the attempt's time limit must allow {MIN_TIME_COVER:g}x its estimated time, so it can bill up to "
            f"{usd(min_hold_usd)}; with {usd(spent_usd)} already spent or held that exceeds the hard limit of "
            f"{usd(policy.max_budget_usd)} (the estimate alone is {usd(cost)})"
        )
    return None


def attempt_limits(
    *,
    estimated_seconds: float,
    price_usd_per_s: float,
    default_timeout_s: float,
    remaining_usd: float,
    limit_name: str = "the hard limit",
) -> AttemptLimits:
    """The attempt's time limit, cut to what the money left can pay, and the hold that covers it.

    Raises ValueError with the reason when the money left cannot cover the attempt's estimated time.
    """
    if price_usd_per_s <= 0:
        return AttemptLimits(timeout_s=default_timeout_s, hold_usd=0.0, budget_capped=False)
    affordable_s = max(0.0, remaining_usd + MONEY_EPSILON) / price_usd_per_s - HOLD_MARGIN_S
    timeout = min(default_timeout_s, affordable_s)
    if not math.isfinite(timeout) or timeout < MIN_TIME_COVER * estimated_seconds or timeout <= 0:
        raise ValueError(
            f"the {usd(max(remaining_usd, 0.0))} left under {limit_name} pays for {max(affordable_s, 0.0) / 60:.1f} "
            f"min at {usd(price_usd_per_s * 3600)}/h, and this attempt is estimated at {estimated_seconds / 60:.1f} min "
            f"(its time limit must be at least {MIN_TIME_COVER:g}x that)"
        )
    hold = (timeout + HOLD_MARGIN_S) * price_usd_per_s
    capped = timeout < default_timeout_s
    # The tolerance decides whether it fits; the hold itself never passes what is left.
    return AttemptLimits(
        timeout_s=timeout, hold_usd=min(hold, max(remaining_usd, 0.0)) if capped else hold, budget_capped=capped
    )
