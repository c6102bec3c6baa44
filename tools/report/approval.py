"""The approval request and the person's answer: what every entry (CLI, chat, Chainlit, ``aegis train``) shows at
the gate and records as shown, and what it answers."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.core.isolation import CodeFile
from tools.core.money import usd
from tools.core.spec import TrainingSpec
from tools.core.status import Decision
from tools.plan.optimizer import Candidate, OptimizationProposal
from tools.plan.worst_case import PlannedAttempt

NEAR_MISSES = 3


class OptimizationOffer(BaseModel):
    """The optimizer's proposal for a refused job: why it was refused, what changes, every candidate priced."""

    model_config = ConfigDict(extra="forbid")

    refused_because: str
    summary: str
    changes: dict[str, list[Any]]
    candidates: list[Candidate]
    spec_hash: str | None = None  # the proposed spec's: the offer shows only while it is the job's spec

    @classmethod
    def of(cls, proposal: OptimizationProposal, refused_because: str) -> OptimizationOffer:
        return cls(
            refused_because=refused_because,
            summary=proposal.summary,
            changes=proposal.changes,
            candidates=proposal.candidates,
            spec_hash=proposal.spec.spec_hash(),
        )

    @property
    def near_misses(self) -> list[Candidate]:
        """The variants that came closest to fitting, least over first."""
        missing = [c for c in self.candidates if not c.fits]
        return sorted(missing, key=lambda c: c.vram_gb - c.gpu_memory_gb)[:NEAR_MISSES]

    def table(self) -> str:
        """Every candidate, sorted by cost (fitting first), the chosen one marked, then the near misses by name."""
        rows = [
            "| | GPU | method | checkpointing | seq_len | cost | VRAM needed / has | minutes | fits |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in self.candidates:
            rows.append(
                f"| {'→ chosen' if c.chosen else ''} | {c.gpu} | {c.method} | {'yes' if c.gradient_checkpointing else 'no'}"
                f" | {c.seq_len} | {usd(c.cost_usd)} | {c.vram_gb:.1f} / {c.gpu_memory_gb:g} GB | {c.minutes:.1f} | "
                f"{'yes' if c.fits else 'no'} |"
            )
        near = "; ".join(
            f"{c.gpu} {c.method}{' +checkpointing' if c.gradient_checkpointing else ''} needs {c.vram_gb:.1f} of "
            f"{c.gpu_memory_gb:g} GB"
            for c in self.near_misses
        )
        return "\n".join(rows) + (f"\n\nNear misses: {near}." if near else "")

    def text(self) -> str:
        """What the person reads: the refusal, the proposal and its changes, and the table."""
        changed = ", ".join(f"{k} {a} → {b}" for k, (a, b) in self.changes.items()) or "none"
        return (
            f"The job as asked was refused ({self.refused_because}). The optimizer proposes its cheapest spec that "
            f"fits within the limits: {self.summary}\nChanges: {changed}.\n\n{self.table()}"
        )


class ApprovalRequest(BaseModel):
    """What a person sees at the gate: the spec, the money, and the limits it is held to."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    request_id: str = Field(description="The spend store's record of this question; an answer names it.")
    spec_hash: str
    quote_hash: str = Field(description="The quote shown: the same hash as the estimate and the report carry.")
    estimate_hash: str
    data_digest: str
    spec: TrainingSpec
    estimated_cost_usd: float
    estimated_duration_min: float
    time_source: str = Field(default="modelled", description="'modelled', or how the step time was measured.")
    estimated_vram_gb: float
    fits: bool
    gpu: str
    backend: str = Field(default="", description="Where it runs: the backend the estimate, hold and bill name.")
    isolation: str = Field(default="", description="What contains the run, e.g. 'isolation: bubblewrap (…)'.")
    remote_code: list[CodeFile] = Field(default_factory=list, description="The model's own code the run executes.")
    spent_usd: float
    soft_threshold_usd: float
    max_budget_usd: float
    limits: list[str] = Field(
        default_factory=list, description="Every limit in force (thread, person, installation) and what is left in it."
    )
    reason: str
    options: list[Decision] = list(Decision)
    attempts: list[PlannedAttempt] = []
    worst_case_usd: float | None = None
    retries_budget_allows: int | None = None
    dtype: str = ""
    num_gpus: int = 1
    timeout_s: float | None = Field(default=None, description="Wall-clock limit of each attempt.")
    max_attempt_cost_usd: float | None = Field(default=None, description="What an attempt bills if it hits the limit.")
    eval_plan: str = Field(
        default="", description="What the evals will measure and cost: sizes, declared checks, a judge's tokens."
    )
    field_sources: dict[str, str] = Field(
        default_factory=dict, description="Each spec field: 'you', 'default' or 'changed by Aegis' (agent.intake)."
    )
    optimization: OptimizationOffer | None = Field(
        default=None, description="Set when this spec is the optimizer's, offered because the job as asked was refused."
    )


def sources_line(request: ApprovalRequest) -> str:
    """Which fields of the spec at the gate the person set, which Aegis changed, and which are defaults."""
    values = request.spec.model_dump(mode="json")
    parts = []
    for source, title in (("you", "From you"), ("changed by Aegis", "Changed by Aegis"), ("default", "Defaults")):
        named = [f"{k}={values[k]}" for k, v in request.field_sources.items() if v == source]
        if named:
            parts.append(f"{title}: {', '.join(named)}")
    return ". ".join(parts)


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
