"""The quote: one price for one spec on one copy of its data, built once (``tools.job.quoting``).

``aegis estimate``, the chat's estimate, the approval a person answers and the report all show the same
quote, so a person is never told two prices for one spec. Its hash covers every number in it: two views
that show the same hash showed the same numbers.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tools.core.spec import BudgetPolicy, CostEstimate, stable_hash
from tools.plan.optimizer import OptimizationProposal
from tools.plan.worst_case import WorstCase


class AttemptCap(BaseModel):
    """What one attempt may run and bill before it is stopped: its time limit, cut to what the money left pays."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float
    max_attempt_cost_usd: float
    budget_capped: bool = False
    short_by: str | None = Field(default=None, description="Why the money left cannot pay for the attempt, if so.")


class Quote(BaseModel):
    """Everything a person is told before anything runs: the target's estimate (probed or modelled, corrected by
    the ledger of actuals), the same job on this CPU where the target cannot run here, the checkpoint interval,
    every retry the rules allow priced, one attempt's limits, where it runs and what contains it (the estimate's
    placement), and the optimizer's offer where the job as asked does not fit or is over the limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec_hash: str
    data_digest: str
    estimate: CostEstimate
    cpu_offer: CostEstimate | None = Field(
        default=None, description="When no backend here has the target: the same job estimated on this CPU."
    )
    checkpoint_every: int
    worst_case: WorstCase | None = Field(default=None, description="None where nothing here can run the target.")
    cap: AttemptCap | None = None
    offer: OptimizationProposal | None = Field(
        default=None,
        description="The optimizer's cheapest fitting spec, where the job as asked does not fit or is "
        "over the hard limit.",
    )
    no_offer: str | None = Field(default=None, description="Why the optimizer found nothing, where it was asked.")
    policy: BudgetPolicy = Field(description="The limits the quote was priced under.")
    spent_usd: float = Field(ge=0, description="Money spent or held in the thread when it was priced.")
    quote_hash: str = ""

    @property
    def estimate_hash(self) -> str:
        return self.estimate.estimate_hash()

    def sealed(self) -> Quote:
        """The quote with its hash set: a digest of every field but the hash itself."""
        return self.model_copy(update={"quote_hash": stable_hash(self.model_dump(mode="json", exclude={"quote_hash"}))})
