"""The job: one serialisable record of a fine-tuning job, and the values read off it.

JobState is what LangGraph checkpoints and the pipeline carries; it holds no money. Money lives in the
spend store (``tools.policy.store``), which every step that grants, answers, starts or ends asks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tools.core.errors import AegisError, GuardRefusal
from tools.core.money import minimum_hold_usd, require_price
from tools.core.runlog import RunFolder
from tools.core.spec import BudgetPolicy, CostEstimate, EvalResult, ExecutionResult, TrainingSpec
from tools.core.status import Decision, EventStatus, JobStatus
from tools.inputs.prepared import PreparedSpec
from tools.plan.checkpoints import ResumePoint
from tools.plan.preflight import PreflightReport
from tools.plan.quote import Quote
from tools.plan.remediation import Remediation
from tools.policy.gate import ApprovalRecord, GateOutcome
from tools.policy.records import Binding, Lifecycle
from tools.policy.store import spend_store
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


class WarmStart(BaseModel):
    """The finished run a new run starts from: its trained weights, and what they were trained as."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    kind: Literal["adapter", "model"] = Field(description="adapter: a LoRA adapter on the base; model: full weights.")
    path: str = Field(description="The parent's final folder.")
    method: str
    model_name: str
    final_train_loss: float | None = None


class JobState(BaseModel):
    """Everything the steps need, serialisable so LangGraph can checkpoint it. Money lives in the spend store."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    run_dir: str
    thread_id: str = ""
    spec: TrainingSpec | None = None
    policy: BudgetPolicy = Field(default_factory=BudgetPolicy)
    quote: Quote | None = Field(default=None, description="The price of the current spec: what every view shows.")
    prepared: PreparedSpec | None = Field(default=None, description="The current spec, its data read once.")
    preflight: PreflightReport | None = None
    resume: ResumePoint | None = None
    gate: GateOutcome | None = None
    approval: ApprovalRecord | None = None
    pending_request_id: str | None = None
    decision: Decision | None = None
    decided_by: str | None = None
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
    warm_start: WarmStart | None = Field(default=None, description="The finished run whose weights it starts from.")
    continued: list[ResumePoint] = Field(
        default_factory=list, description="Each `aegis continue` of this run: where it resumed, what it saved."
    )
    model_fingerprint: str | None = Field(default=None, description="The base model it trained, as first started.")

    @model_validator(mode="before")
    @classmethod
    def _written_before_quotes(cls, values: Any) -> Any:
        """A job recorded before quotes (an old job.json, a thread paused before an upgrade) still reads: its
        estimate becomes the quote it was shown with, and the ledger's copy of the store's money is dropped."""
        if not isinstance(values, dict) or "estimate" not in values:
            return values
        values = dict(values)
        estimate, spec_hash = values.pop("estimate"), values.pop("estimate_spec_hash", None)
        offer, every = values.pop("cpu_offer", None), values.pop("checkpoint_every", None)
        values.pop("ledger", None)
        if estimate is not None and spec_hash:
            digest = ((values.get("prepared") or {}).get("data") or {}).get("digest", "")
            values["quote"] = Quote(
                spec_hash=spec_hash,
                data_digest=digest,
                estimate=estimate,
                cpu_offer=offer,
                checkpoint_every=every or 1,
                policy=values.get("policy") or BudgetPolicy(),
                spent_usd=0.0,
            ).sealed()
        return values

    @property
    def folder(self) -> RunFolder:
        return RunFolder(Path(self.run_dir))

    @property
    def estimate(self) -> CostEstimate | None:
        """The quote's estimate of the target, when the job has a quote."""
        return self.quote.estimate if self.quote is not None else None

    @property
    def cpu_offer(self) -> CostEstimate | None:
        return self.quote.cpu_offer if self.quote is not None else None

    @property
    def checkpoint_every(self) -> int | None:
        return self.quote.checkpoint_every if self.quote is not None else None

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
    person: str | None = None,
) -> JobState:
    """A new job in its own folder, registered with the spend store in its thread (its own, by default) for a
    person (the CLI's, by default)."""
    if backend != AUTO:
        get_backend(backend)  # an unknown name is refused before anything is written
    folder = RunFolder.create(run_id)
    thread = thread_id or folder.run_id
    spend_store().open_job(folder.run_id, thread, policy, max_retries, person=person)
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


def job_for_request(
    previous: JobState | None,
    policy: BudgetPolicy,
    *,
    asked_budget_usd: float | None,
    thread_id: str | None,
    max_retries: int,
    backend: str = AUTO,
    local_memory_limit_mb: int | None = None,
    person: str | None = None,
) -> JobState:
    """The job a new request in a thread works on: the thread's job while nothing has run and it is open (its
    policy tightened by the request's budget, never loosened), else a new job in the same thread.

    The new job's gate counts everything spent and held in the thread: money is the thread's, not the job's.
    """
    policy = policy.tightened(asked_budget_usd)
    store = spend_store()
    if previous is not None:
        open_ = store.job(previous.run_id).lifecycle is Lifecycle.OPEN
        if not previous.attempts and previous.status not in TERMINAL and open_:
            return previous.model_copy(update={"policy": store.tighten(previous.run_id, policy).policy})
    run_id = thread_id if thread_id and previous is None else None
    return new_job(
        policy,
        max_retries=max_retries,
        backend=backend,
        run_id=run_id,
        thread_id=thread_id,
        local_memory_limit_mb=local_memory_limit_mb,
        person=person,
    )


def require_spec(job: JobState) -> TrainingSpec:
    if job.spec is None:
        raise AegisError("there is no training spec yet")
    return job.spec


def require_quote(job: JobState) -> Quote:
    if job.quote is None or job.spec is None or job.quote.spec_hash != job.spec.spec_hash():
        raise GuardRefusal("there is no cost estimate for the current spec; estimate it first")
    return job.quote


def require_estimate(job: JobState) -> CostEstimate:
    return require_quote(job).estimate


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
    backend, spec = job_backend(job), require_spec(job)
    return require_price(backend.price_usd_per_sec(spec), f"{spec.target_gpu} on {backend.name}")


def min_hold(job: JobState) -> float:
    """What the next attempt must be allowed to bill at the least, on the backend it will run on."""
    return minimum_hold_usd(require_estimate(job).cost_breakdown.estimated_seconds, attempt_price(job))
