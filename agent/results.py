"""What each guarded tool returns: one pydantic model per tool, a discriminated union on ``tool``.

A result is serialized as its ToolMessage's content. The offline planner, the CLI and Chainlit read it back
with ``read_tool_result`` (``TypeAdapter.validate_json``) and then use its typed fields: nothing parses a
tool's reply by dict key or from its message text. Every result says ``ok``, ``status``, ``message``,
``run_id`` and ``report_path``; what only one tool knows (the estimate, the approval's outcome, the
attempt's metrics, the eval checks, the remediation) sits in that tool's own typed fields.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tools.core.isolation import Placement
from tools.core.money import usd
from tools.core.spec import CostEstimate, EvalCheck, TrainingSpec
from tools.core.status import AttemptStatus, FailureClass
from tools.job.state import JobState
from tools.plan.preflight import PreflightCheck
from tools.report.approval import OptimizationOffer


class ToolName(StrEnum):
    """The agent's only means of action."""

    ESTIMATE_COST = "estimate_cost"
    REQUEST_APPROVAL = "request_approval"
    RENDER_SCRIPT = "render_script"
    RUN_LOCAL = "run_local"
    RUN_ON_MODAL = "run_on_modal"
    RUN_EVALS = "run_evals"
    REMEDIATE = "remediate"


RUN_TOOLS = frozenset({ToolName.RUN_LOCAL, ToolName.RUN_ON_MODAL})


class ReadOnlyName(StrEnum):
    """The tools that read and spend nothing: called without approval, they never touch a job."""

    LIST_RUNS = "list_runs"
    COMPARE_RUNS = "compare_runs"
    PREVIEW_DATA = "preview_data"
    TRY_RUN = "try_run"
    SHOW_REPORT = "show_report"


class ResultStatus(StrEnum):
    """What one tool call came to."""

    ESTIMATED = "estimated"
    PREFLIGHT_FAILED = "preflight_failed"
    APPROVED = "approved"
    OPTIMIZED = "optimized"
    CANCELLED = "cancelled"
    REFUSED = "refused"
    RENDERED = "rendered"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    PASSED = "passed"
    REMEDIATED = "remediated"
    PROBED = "probed"  # a probe attempt ran and re-priced the full run, which is to be asked for again
    NOT_RUNNABLE = "not_runnable"  # no backend here has the target; the estimate offers the job on this CPU
    ANSWERED = "answered"  # a read-only tool answered; nothing was started or spent
    ERROR = "error"


class Facts(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PreflightFacts(Facts):
    """The free checks run before any money is asked for."""

    passed: bool
    checks: list[PreflightCheck]
    truncated_share: float


class CpuOffer(Facts):
    """The same job on this machine, offered when no backend has the target: its own spec, estimate and approval."""

    estimated_cost_usd: float
    estimated_duration_min: float
    estimated_vram_gb: float
    fits: bool
    isolation: str

    @classmethod
    def of(cls, offer: CostEstimate) -> CpuOffer:
        return cls(
            estimated_cost_usd=offer.estimated_cost_usd,
            estimated_duration_min=round(offer.estimated_duration_min, 2),
            estimated_vram_gb=round(offer.estimated_vram_gb, 2),
            fits=offer.fits,
            isolation=offer.placement.where() if offer.placement else "isolation: unknown",
        )


class EstimateFacts(Facts):
    """An estimate against the budget limits, as a person judges it."""

    estimated_cost_usd: float
    estimated_duration_min: float
    time_source: str = Field(default="modelled", description="'modelled', or what measured the time")
    estimated_vram_gb: float
    gpu: str
    num_gpus: int
    fits: bool
    gpu_memory_gb: float
    total_steps: int
    dataset_rows: int
    dataset_tokens: int
    trainable_params: int
    total_params: int
    soft_threshold_usd: float
    max_budget_usd: float
    spent_usd: float = Field(description="Money captured and held in the thread when the estimate was made.")
    notes: list[str] = Field(default_factory=list)
    preflight: PreflightFacts | None = None
    placement: Placement | None = Field(default=None, description="Where it runs, what contains it, its own code.")
    cpu_offer: CpuOffer | None = None
    spec: TrainingSpec
    quote_hash: str = Field(description="The quote these figures come from: the approval and the report show it.")

    @classmethod
    def of(cls, job: JobState, spent_usd: float) -> EstimateFacts:
        assert job.quote is not None and job.estimate is not None and job.spec is not None
        bd = job.estimate.cost_breakdown
        preflight = None
        if job.preflight is not None:
            preflight = PreflightFacts(
                passed=job.preflight.passed,
                checks=job.preflight.checks,
                truncated_share=round(job.preflight.truncated_share, 3),
            )
        return cls(
            estimated_cost_usd=job.estimate.estimated_cost_usd,
            estimated_duration_min=round(job.estimate.estimated_duration_min, 2),
            time_source=bd.time_source,
            estimated_vram_gb=round(job.estimate.estimated_vram_gb, 2),
            gpu=bd.gpu,
            num_gpus=bd.num_gpus,
            fits=bd.fits,
            gpu_memory_gb=bd.gpu_memory_gb,
            total_steps=bd.total_steps,
            dataset_rows=bd.dataset_rows,
            dataset_tokens=bd.dataset_tokens,
            trainable_params=bd.trainable_params,
            total_params=bd.total_params,
            soft_threshold_usd=job.policy.soft_threshold_usd,
            max_budget_usd=job.policy.max_budget_usd,
            spent_usd=round(spent_usd, 4),
            notes=bd.notes,
            preflight=preflight,
            placement=job.estimate.placement,
            cpu_offer=CpuOffer.of(job.cpu_offer) if job.cpu_offer is not None else None,
            spec=job.spec,
            quote_hash=job.quote.quote_hash,
        )


def not_runnable_message(facts: EstimateFacts) -> str:
    """Why nothing will be asked for, and the same job where it can run (a new spec: its own estimate and approval)."""
    hint = facts.placement.hint if facts.placement else None
    said = f"nothing here can run this on {facts.gpu}: {hint}. Nothing will be asked for or spent"
    offer = facts.cpu_offer
    if offer is None:
        return said + "."
    fits = "fits" if offer.fits else "does NOT fit"
    return (
        f"{said}. The same job on this CPU: {usd(offer.estimated_cost_usd)}, {offer.estimated_duration_min:.1f} min, "
        f"{offer.estimated_vram_gb:.1f} GB ({fits}), {offer.isolation}; to run it there, ask for it on cpu "
        "(estimate_cost with target_gpu='cpu'): it gets its own estimate and approval"
    )


class AttemptFacts(Facts):
    """What the last training attempt did, read from its own logs."""

    attempt: int
    status: AttemptStatus
    failure_class: FailureClass | None = None
    error: str | None = None
    retry_count: int
    max_retries: int
    initial_train_loss: float | None = None
    final_train_loss: float | None = None
    initial_eval_loss: float | None = None
    final_eval_loss: float | None = None
    steps: int
    duration_s: float
    tokens_per_s: float
    peak_memory_mb: float
    actual_cost_usd: float
    spent_usd: float = Field(description="Money captured and held in the thread after the attempt.")

    @classmethod
    def of(cls, job: JobState, spent_usd: float) -> AttemptFacts:
        last = job.attempts[-1]
        return cls(
            attempt=len(job.attempts),
            status=last.status,
            failure_class=last.failure_class,
            error=last.error_message,
            retry_count=job.retry_count,
            max_retries=job.max_retries,
            initial_train_loss=last.initial_train_loss,
            final_train_loss=last.final_train_loss,
            initial_eval_loss=last.initial_eval_loss,
            final_eval_loss=last.final_eval_loss,
            steps=last.steps_completed,
            duration_s=round(last.duration_s, 1),
            tokens_per_s=round(last.tokens_per_s, 1),
            peak_memory_mb=round(last.peak_memory_mb, 1),
            actual_cost_usd=round(last.actual_cost_usd, 4),
            spent_usd=round(spent_usd, 4),
        )


class EvalFacts(Facts):
    checks: list[EvalCheck]
    metrics: dict[str, float | None] = Field(default_factory=dict)


class RemediationFacts(Facts):
    """The healing rule applied to the last failed attempt, and what it changed."""

    retry_count: int
    max_retries: int
    rule: str
    changes: dict[str, list[Any]]
    explanation: str


class ToolResult(BaseModel):
    """What every tool call returns, whatever the tool; also what a reply that is no result reads as."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    ok: bool
    status: ResultStatus
    message: str = ""
    run_id: str | None = None
    report_path: str | None = None


class EstimateResult(ToolResult):
    tool: Literal[ToolName.ESTIMATE_COST] = ToolName.ESTIMATE_COST
    estimate: EstimateFacts | None = None


class ApprovalResult(ToolResult):
    tool: Literal[ToolName.REQUEST_APPROVAL] = ToolName.REQUEST_APPROVAL
    decided_by: str | None = None
    estimate: EstimateFacts | None = Field(default=None, description="The cheaper spec, when asked to optimize.")
    offer: OptimizationOffer | None = Field(default=None, description="The optimizer's offer, when refused as asked.")


class RenderResult(ToolResult):
    tool: Literal[ToolName.RENDER_SCRIPT] = ToolName.RENDER_SCRIPT
    script_path: str | None = None
    config_path: str | None = None


class RunResult(ToolResult):
    tool: Literal[ToolName.RUN_LOCAL, ToolName.RUN_ON_MODAL]
    attempt: AttemptFacts | None = None
    estimate: EstimateFacts | None = None  # after a probe attempt: the full run, re-priced


class EvalsResult(ToolResult):
    tool: Literal[ToolName.RUN_EVALS] = ToolName.RUN_EVALS
    evals: EvalFacts | None = None


class RemediateResult(ToolResult):
    tool: Literal[ToolName.REMEDIATE] = ToolName.REMEDIATE
    remediation: RemediationFacts | None = None
    estimate: EstimateFacts | None = Field(default=None, description="The healed spec's estimate.")


class ReadOnlyResult(ToolResult):
    """A read-only tool's answer: a one-line ``message`` and the ``text`` a person reads (markdown)."""

    tool: Literal[
        ReadOnlyName.LIST_RUNS,
        ReadOnlyName.COMPARE_RUNS,
        ReadOnlyName.PREVIEW_DATA,
        ReadOnlyName.TRY_RUN,
        ReadOnlyName.SHOW_REPORT,
    ]
    text: str = ""


AnyToolResult = Annotated[
    EstimateResult | ApprovalResult | RenderResult | RunResult | EvalsResult | RemediateResult | ReadOnlyResult,
    Field(discriminator="tool"),
]
TOOL_RESULT: TypeAdapter[AnyToolResult] = TypeAdapter(AnyToolResult)
RESULT_TYPES: dict[ToolName, type[ToolResult]] = {
    ToolName.ESTIMATE_COST: EstimateResult,
    ToolName.REQUEST_APPROVAL: ApprovalResult,
    ToolName.RENDER_SCRIPT: RenderResult,
    ToolName.RUN_LOCAL: RunResult,
    ToolName.RUN_ON_MODAL: RunResult,
    ToolName.RUN_EVALS: EvalsResult,
    ToolName.REMEDIATE: RemediateResult,
}


def failure(tool: ToolName, status: ResultStatus, message: str) -> ToolResult:
    """A call of ``tool`` that did nothing: refused by a guard, or stopped by an error."""
    return RESULT_TYPES[tool](tool=tool, ok=False, status=status, message=message)


def read_tool_result(content: Any, tool: str | None = None) -> ToolResult:
    """A ToolMessage's content as the typed result it holds.

    A reply that is no result (ToolNode's own words for a call it could not make: an unknown tool, bad
    arguments) reads as an error of the tool that was called, with those words as its message.
    """
    text = content if isinstance(content, str) else str(content)
    try:
        return TOOL_RESULT.validate_json(text)
    except ValidationError:
        return ToolResult(tool=tool or "tool", ok=False, status=ResultStatus.ERROR, message=text)
