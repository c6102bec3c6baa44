"""The worst case a person approves: the first attempt and every retry the healing rules allow.

Retries follow the out-of-memory rules, the path that changes the spec the most (smaller micro
batch with more accumulation, then a lighter method), each priced by the estimator. The total is
what the approval can cost if every attempt fails but the last.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from tools.core.errors import GuardRefusal
from tools.core.money import MONEY_EPSILON, minimum_hold_usd
from tools.core.spec import BudgetPolicy, CostEstimate, TrainingSpec
from tools.inputs.dataset import DatasetStats
from tools.plan.estimator import estimate as price
from tools.plan.remediation import plan_remediation


class PlannedAttempt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempt: int
    rule: str
    changes: dict[str, list[Any]]
    estimated_cost_usd: float
    estimated_minutes: float


class WorstCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempts: list[PlannedAttempt]
    worst_case_usd: float
    retries_budget_allows: int
    dtype: str
    num_gpus: int


def plan_worst_case(
    spec: TrainingSpec,
    estimate: CostEstimate,
    policy: BudgetPolicy,
    *,
    max_retries: int,
    spent_usd: float,
    price_usd_per_s: float,
    dataset_stats: DatasetStats,
    model_config: Any,
) -> WorstCase:
    """Price every attempt the rules allow and count how many retries the remaining budget covers.

    A retry is covered when what the attempts before it cost, plus the least its own time limit can bill
    (``minimum_hold_usd`` at ``price_usd_per_s``, the runner's price), stays under the hard limit: the
    rule the spend store applies when the retry starts. Every retry is priced at the backend's price, the one
    its bill will use.
    """
    stats, config = dataset_stats, model_config
    attempts = [
        PlannedAttempt(
            attempt=1,
            rule="as approved",
            changes={},
            estimated_cost_usd=estimate.estimated_cost_usd,
            estimated_minutes=estimate.estimated_duration_min,
        )
    ]
    holds = [minimum_hold_usd(estimate.cost_breakdown.estimated_seconds, price_usd_per_s)]
    current = spec
    for retry in range(max_retries):
        try:
            plan = plan_remediation(current, "oom", retry_count=retry, max_retries=max_retries)
        except GuardRefusal:
            break
        current = plan.new_spec
        cost = price(current, dataset_stats=stats, model_config=config, price_usd_per_sec=price_usd_per_s)
        attempts.append(
            PlannedAttempt(
                attempt=retry + 2,
                rule=plan.rule,
                changes={k: list(v) for k, v in plan.changes.items()},
                estimated_cost_usd=cost.estimated_cost_usd,
                estimated_minutes=cost.estimated_duration_min,
            )
        )
        holds.append(minimum_hold_usd(cost.cost_breakdown.estimated_seconds, price_usd_per_s))
    allowed, running = 0, spent_usd + attempts[0].estimated_cost_usd
    for later, hold in zip(attempts[1:], holds[1:], strict=True):
        if running + max(later.estimated_cost_usd, hold) > policy.max_budget_usd + MONEY_EPSILON:
            break
        running += later.estimated_cost_usd
        allowed += 1
    return WorstCase(
        attempts=attempts,
        worst_case_usd=sum(a.estimated_cost_usd for a in attempts),
        retries_budget_allows=allowed,
        dtype=estimate.cost_breakdown.dtype,
        num_gpus=estimate.cost_breakdown.num_gpus,
    )
