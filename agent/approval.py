"""The approval request and the person's answer: small typed records the CLI and Chainlit share."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

from tools.core.spec import TrainingSpec
from tools.core.status import Decision
from tools.plan.worst_case import PlannedAttempt


class ApprovalRequest(BaseModel):
    """What a person sees at the gate: the spec, the money, and the limits it is held to."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    request_id: str = Field(description="The spend store's record of this question; an answer names it.")
    spec_hash: str
    spec: TrainingSpec
    estimated_cost_usd: float
    estimated_duration_min: float
    estimated_vram_gb: float
    fits: bool
    gpu: str
    spent_usd: float
    soft_threshold_usd: float
    max_budget_usd: float
    reason: str
    options: list[Decision] = list(Decision)
    attempts: list[PlannedAttempt] = []
    worst_case_usd: float | None = None
    retries_budget_allows: int | None = None
    dtype: str = ""
    num_gpus: int = 1
    timeout_s: float | None = Field(default=None, description="Wall-clock limit of each attempt.")
    max_attempt_cost_usd: float | None = Field(default=None, description="What an attempt bills if it hits the limit.")


class ApprovalAnswer(BaseModel):
    """A person's answer. Only the CLI, Chainlit or a test can produce one: never the model."""

    model_config = ConfigDict(extra="forbid")

    decision: Decision
    decided_by: str = Field(pattern=r"^person:[A-Za-z0-9_.@-]+$", description="e.g. person:cli.yes")
    request_id: str | None = Field(
        default=None, description="The request answered; the session fills in the pending one."
    )
    answer_id: str = Field(
        default_factory=lambda: uuid.uuid4().hex,
        pattern=r"^[0-9a-f]{32}$",
        description="Makes the answer idempotent: the store takes each request's answer once.",
    )
