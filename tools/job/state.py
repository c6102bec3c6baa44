"""The job: one serialisable record of a fine-tuning job, and the values read off it.

JobState is what LangGraph checkpoints and the pipeline carries; it holds no money. Money lives in the
spend store (``tools.policy.store``), which every step that grants, answers, starts or ends asks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.core.errors import AegisError, GuardRefusal
from tools.core.money import minimum_hold_usd
from tools.core.runlog import RunFolder
from tools.core.spec import BudgetPolicy, CostEstimate, EvalResult, ExecutionResult, TrainingSpec
from tools.core.status import Decision, EventStatus, JobStatus
from tools.inputs.prepared import PreparedSpec
from tools.plan.checkpoints import ResumePoint
from tools.plan.preflight import PreflightReport
from tools.plan.remediation import Remediation
from tools.policy.gate import ApprovalRecord, GateOutcome
from tools.policy.ledger import SpendLedger
from tools.policy.records import Binding
from tools.policy.store import SpendStore
from tools.run.backend import AUTO, Backend, NoBackend, get_backend

TERMINAL: frozenset[JobStatus] = frozenset(
    {
        JobStatus.SUCCEEDED,
        JobStatus.EVALS_FAILED,
        JobStatus.FAILED,
        JobStatus.INTERRUPTED,
        JobStatus.CANCELLED,
        JobStatus.REFUSED,
    }
)
ProgressFn = Callable[[dict[str, Any]], None]


class RenderedRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempt: int
    workdir: str
    script_path: str
    config_path: str
    spec_hash: str


class JobState(BaseModel):
    """Everything the steps need, serialisable so LangGraph can checkpoint it. Money lives in the spend store."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    run_dir: str
    thread_id: str = ""
    spec: TrainingSpec | None = None
    policy: BudgetPolicy = Field(default_factory=BudgetPolicy)
    estimate: CostEstimate | None = None
    estimate_spec_hash: str | None = None
    cpu_offer: CostEstimate | None = Field(
        default=None, description="When no backend here has the target: the same job estimated on this CPU."
    )
    prepared: PreparedSpec | None = Field(default=None, description="The current spec, its data read once.")
    preflight: PreflightReport | None = None
    checkpoint_every: int | None = None
    resume: ResumePoint | None = None
    gate: GateOutcome | None = None
    approval: ApprovalRecord | None = None
    pending_request_id: str | None = None
    decision: Decision | None = None
    decided_by: str | None = None
    ledger: SpendLedger = Field(default_factory=SpendLedger)
    retry_count: int = 0
    max_retries: int = Field(default=3, ge=0, le=10)
    rendered: RenderedRef | None = None
    attempts: list[ExecutionResult] = Field(default_factory=list)
    remediations: list[Remediation] = Field(default_factory=list)
    eval_result: EvalResult | None = None
    report_path: str | None = None
    status: JobStatus = JobStatus.PLANNING
    backend_choice: str = Field(default=AUTO, description="The backend a person asked for; auto: by the target.")
    local_memory_limit_mb: int | None = None
    probe_of: TrainingSpec | None = Field(
        default=None, description="While a probe attempt is the current spec: the full spec it will re-price."
    )

    @property
    def folder(self) -> RunFolder:
        return RunFolder(Path(self.run_dir))

    @property
    def thread(self) -> str:
        return self.thread_id or self.run_id

    @property
    def data_digest(self) -> str | None:
        """Digest of the data bytes the current estimate read: what an approval binds."""
        return self.prepared.data.digest if self.prepared is not None else None

    def record(self, phase: str, status: EventStatus, message: str, **data: Any) -> None:
        self.folder.record(phase, status, message, data)


def new_job(
    policy: BudgetPolicy,
    *,
    max_retries: int = 3,
    backend: str = AUTO,
    run_id: str | None = None,
    thread_id: str | None = None,
    local_memory_limit_mb: int | None = None,
) -> JobState:
    """A new job in its own folder, registered with the spend store in its thread (its own, by default)."""
    if backend != AUTO:
        get_backend(backend)  # an unknown name is refused before anything is written
    folder = RunFolder.create(run_id)
    thread = thread_id or folder.run_id
    SpendStore().open_job(folder.run_id, thread, policy, max_retries)
    job = JobState(
        run_id=folder.run_id,
        run_dir=str(folder.root),
        thread_id=thread,
        policy=policy,
        max_retries=max_retries,
        backend_choice=backend,
        local_memory_limit_mb=local_memory_limit_mb,
    )
    job.record(
        "job",
        "started",
        f"run {job.run_id} created",
        policy=policy.model_dump(),
        max_retries=max_retries,
        backend=backend,
        thread_id=thread,
    )
    return job


def require_spec(job: JobState) -> TrainingSpec:
    if job.spec is None:
        raise AegisError("there is no training spec yet")
    return job.spec


def require_estimate(job: JobState) -> CostEstimate:
    if job.estimate is None or job.spec is None or job.estimate_spec_hash != job.spec.spec_hash():
        raise GuardRefusal("there is no cost estimate for the current spec; estimate it first")
    return job.estimate


def binding(job: JobState) -> Binding:
    """What an approval of the job's current spec is bound to."""
    spec, est = require_spec(job), require_estimate(job)
    if not job.data_digest:
        raise GuardRefusal("the data has not been read for this estimate; estimate it first")
    return Binding(spec_hash=spec.spec_hash(), estimate_hash=est.estimate_hash(), data_digest=job.data_digest)


def job_backend(job: JobState) -> Backend:
    """The backend the current estimate chose: the one whose price, limits and device the attempt gets."""
    est = require_estimate(job)
    placement = est.placement
    if placement is None or placement.backend is None:
        raise NoBackend(placement.hint if placement and placement.hint else f"nothing places {est.cost_breakdown.gpu}")
    return get_backend(placement.backend)


def attempt_price(job: JobState) -> float:
    """Dollars per second the attempt bills, as its backend prices it (the estimate used the same price)."""
    return job_backend(job).price_usd_per_sec(require_spec(job))


def min_hold(job: JobState) -> float:
    """What the next attempt must be allowed to bill at the least, on the backend it will run on."""
    return minimum_hold_usd(require_estimate(job).cost_breakdown.estimated_seconds, attempt_price(job))
