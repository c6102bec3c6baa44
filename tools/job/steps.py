"""The job engine: one serialisable record of a fine-tuning job and the steps that move it.

Both the deterministic pipeline (``aegis train``) and the agent's guarded tools call these steps, so a
refusal means the same thing in both. Money decisions are not made here: every step that grants,
answers or ends asks the spend store (``tools.policy.store``), which holds the truth for every process.
Each step writes its events to the run's append-only log before it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.core.catalog import get_gpu
from tools.core.errors import AegisError, GuardRefusal
from tools.core.money import minimum_hold_usd
from tools.core.paths import resolve_dataset_path
from tools.core.runlog import RunFolder
from tools.core.spec import BudgetPolicy, CostEstimate, Decision, EvalResult, ExecutionResult, RunStatus, TrainingSpec
from tools.evals.model_evals import EvalThresholds, run_evals
from tools.inputs.datafile import DataSnapshot, data_digest
from tools.inputs.local_models import resolve_model
from tools.inputs.model_config import load_model_config, model_stats
from tools.plan.actuals import apply_learning, learned_error, read_actuals
from tools.plan.checkpoints import (
    ResumePoint,
    can_resume,
    checkpoint_interval,
    last_good_checkpoint,
    max_loss_share,
    price_resumed,
)
from tools.plan.estimator import estimate, read_dataset_stats, startup_seconds
from tools.plan.optimizer import optimize_spec
from tools.plan.preflight import PreflightReport
from tools.plan.remediation import plan_remediation
from tools.policy.gate import ApprovalRecord, GateOutcome
from tools.policy.ledger import SpendLedger
from tools.policy.records import Binding, Grant
from tools.policy.store import SpendStore
from tools.report.report import plot_loss_curve, write_report
from tools.run.smoke import run_preflight

JobStatus = Literal[
    "planning",
    "awaiting_approval",
    "approved",
    "running",
    "healing",
    "succeeded",
    "failed",
    "interrupted",
    "refused",
    "cancelled",
]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "interrupted", "cancelled", "refused"})
Executor = Literal["local", "modal"]
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
    local_estimate: CostEstimate | None = None
    data_digest: str | None = Field(default=None, description="Digest of the data bytes the estimate read.")
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
    trained_data: DataSnapshot | None = Field(default=None, description="The copy the last attempt trained on.")
    remediations: list[dict[str, Any]] = Field(default_factory=list)
    eval_result: EvalResult | None = None
    report_path: str | None = None
    status: JobStatus = "planning"
    executor: Executor = "local"
    local_memory_limit_mb: int | None = None

    @property
    def folder(self) -> RunFolder:
        return RunFolder(Path(self.run_dir))

    @property
    def thread(self) -> str:
        return self.thread_id or self.run_id

    def record(self, phase: str, status: RunStatus, message: str, **data: Any) -> None:
        self.folder.record(phase, status, message, data)


def new_job(
    policy: BudgetPolicy,
    *,
    max_retries: int = 3,
    executor: Executor = "local",
    run_id: str | None = None,
    thread_id: str | None = None,
    local_memory_limit_mb: int | None = None,
) -> JobState:
    """A new job in its own folder, registered with the spend store in its thread (its own, by default)."""
    folder = RunFolder.create(run_id)
    thread = thread_id or folder.run_id
    SpendStore().open_job(folder.run_id, thread, policy, max_retries)
    job = JobState(
        run_id=folder.run_id,
        run_dir=str(folder.root),
        thread_id=thread,
        policy=policy,
        max_retries=max_retries,
        executor=executor,
        local_memory_limit_mb=local_memory_limit_mb,
    )
    job.record(
        "job",
        "started",
        f"run {job.run_id} created",
        policy=policy.model_dump(),
        max_retries=max_retries,
        executor=executor,
        thread_id=thread,
    )
    return job


def set_spec(job: JobState, spec: TrainingSpec, *, source: str) -> JobState:
    """Adopt a spec after checking its data paths; any approval for an earlier spec stops matching.

    Refused once the job was cancelled or closed: a person's cancel is not undone by a new estimate.
    """
    SpendStore().require_open(job.run_id)
    resolve_dataset_path(spec.dataset_path)
    if spec.eval_dataset_path:
        resolve_dataset_path(spec.eval_dataset_path)
    resume = job.resume if job.resume and job.spec and can_resume(job.spec, spec) else None
    job = job.model_copy(
        update={"spec": spec, "status": "planning", "rendered": None, "resume": resume, "pending_request_id": None}
    )
    job.folder.write_json("spec.json", spec.model_dump(mode="json"))
    job.record(
        "spec", "completed", f"spec set by {source}", spec_hash=spec.spec_hash(), spec=spec.model_dump(mode="json")
    )
    return job


def estimate_job(job: JobState) -> JobState:
    """Estimate the spec on its target GPU and on the local CPU, each corrected by the ledger of actuals."""
    SpendStore().require_open(job.run_id)
    spec = require_spec(job)
    job.record("estimate", "started", f"estimating {spec.method} of {spec.model_name} on {spec.target_gpu}")
    digest = data_digest(spec.dataset_path, spec.eval_dataset_path)
    inputs = {
        "dataset_stats": read_dataset_stats(spec),
        "model_config": load_model_config(spec.model_name, trust_remote_code=spec.trust_remote_code),
    }
    history = read_actuals()
    target = apply_learning(estimate(spec, **inputs), learned_error(history, spec.target_gpu))
    local = (
        target
        if spec.target_gpu == "cpu"
        else apply_learning(estimate(spec, "cpu", **inputs), learned_error(history, "cpu"))
    )
    resume = job.resume
    if resume is not None:
        stats = model_stats(inputs["model_config"], trust_remote_code=spec.trust_remote_code)
        target, saved_s, saved_usd = price_resumed(target, resume.step, startup_seconds(stats, spec.target_gpu))
        if spec.target_gpu != "cpu":
            local, _, _ = price_resumed(local, resume.step, startup_seconds(stats, "cpu"))
        else:
            local = target
        resume = resume.model_copy(update={"saved_usd": saved_usd, "saved_seconds": saved_s})
    every = checkpoint_interval(target.cost_breakdown.total_steps, max_loss_share())
    job = job.model_copy(
        update={
            "estimate": target,
            "estimate_spec_hash": spec.spec_hash(),
            "local_estimate": local,
            "data_digest": digest,
            "checkpoint_every": every,
            "resume": resume,
            "pending_request_id": None,
        }
    )
    bd = target.cost_breakdown
    job.record(
        "estimate",
        "completed",
        f"${target.estimated_cost_usd:.4f}, {target.estimated_duration_min:.1f} min, "
        f"{target.estimated_vram_gb:.1f} GB on {bd.gpu} ({'fits' if bd.fits else 'does not fit'})",
        estimate=target.model_dump(mode="json"),
        checkpoint_every=every,
        data_digest=digest,
        resume=resume.model_dump(mode="json") if resume else None,
    )
    return preflight_job(job)


def preflight_job(job: JobState) -> JobState:
    """The free local checks for the current spec, run with every estimate so no one is asked to pay for a dud."""
    spec = require_spec(job)
    job.record("preflight", "started", "checking the data, the script and (for a GPU) a 2-step CPU smoke run")
    device = "cpu" if spec.target_gpu == "cpu" else "cuda"
    report = run_preflight(spec, job.folder.root / "preflight" / spec.spec_hash()[:12], device=device)
    job = job.model_copy(update={"preflight": report})
    job.record(
        "preflight",
        "completed" if report.passed else "failed",
        report.summary(),
        preflight=report.model_dump(mode="json"),
    )
    return job


def preflight_refusal(job: JobState) -> str | None:
    """Why pre-flight stops the current spec, or None when it passed for exactly this spec."""
    spec = require_spec(job)
    if job.preflight is None or job.preflight.spec_hash != spec.spec_hash():
        return "pre-flight has not run for the current spec; estimate it first"
    return None if job.preflight.passed else job.preflight.summary()


def binding(job: JobState) -> Binding:
    """What an approval of the job's current spec is bound to."""
    spec, est = require_spec(job), require_estimate(job)
    if not job.data_digest:
        raise GuardRefusal("the data has not been read for this estimate; estimate it first")
    return Binding(spec_hash=spec.spec_hash(), estimate_hash=est.estimate_hash(), data_digest=job.data_digest)


def ran_on(job: JobState) -> CostEstimate:
    """The estimate of the machine the attempt really runs on: the target GPU on Modal, this CPU locally."""
    est = require_estimate(job)
    return est if job.executor == "modal" else (job.local_estimate or est)


def attempt_price(job: JobState) -> float:
    """Dollars per second the attempt bills: the GPUs on Modal; this machine (priced by configuration) locally."""
    spec = require_spec(job)
    if job.executor == "modal":
        return get_gpu(spec.target_gpu).price_usd_per_sec * spec.num_gpus
    return get_gpu("cpu").price_usd_per_sec


def min_hold(job: JobState) -> float:
    """What the next attempt must be allowed to bill at the least, on the machine it will run on."""
    return minimum_hold_usd(ran_on(job).cost_breakdown.estimated_seconds, attempt_price(job))


def _approval(grant: Grant) -> ApprovalRecord:
    return ApprovalRecord(
        grant_id=grant.grant_id,
        decided_by=grant.decided_by,
        spec_hash=grant.binding.spec_hash,
        estimate_hash=grant.binding.estimate_hash,
        data_digest=grant.binding.data_digest,
        approved_usd=grant.approved_usd,
        timestamp=datetime.fromtimestamp(grant.created, UTC),
    )


def gate_job(job: JobState) -> JobState:
    """Ask the FinOps gate; the store grants by policy in the same transaction that read the thread's money."""
    est = require_estimate(job)
    stopped = preflight_refusal(job)
    store = SpendStore()
    if stopped:
        refusal = {"outcome": "refused", "reason": stopped}
        outcome, grant = store.gate(job.run_id, est, min_hold(job)).model_copy(update=refusal), None
    else:
        outcome, grant = store.grant_by_policy(job.run_id, binding(job), est, min_hold(job))
    update: dict[str, Any] = {"gate": outcome, "approval": None, "pending_request_id": None}
    if grant is not None:
        update |= {
            "approval": _approval(grant),
            "status": "approved",
            "decision": "approve",
            "decided_by": grant.decided_by,
        }
    elif outcome.outcome == "refused":
        update |= {"status": "refused"}
    else:
        update |= {"status": "awaiting_approval"}
    job = job.model_copy(update=update)
    status: RunStatus = "failed" if outcome.outcome == "refused" else "completed"
    job.record(
        "gate",
        status,
        f"{outcome.outcome}: {outcome.reason}",
        gate=outcome.model_dump(mode="json"),
        grant_id=grant.grant_id if grant else None,
    )
    return job


def open_request(job: JobState, key: str, shown: Callable[[JobState], str] = lambda job: "{}") -> tuple[JobState, str]:
    """Put the question to a person on record; returns the job and what the person is shown.

    ``shown`` renders the question once its request id is known. The same key (a tool call re-run when
    its pause is resumed) finds the same request and the payload first shown, without asking the gate again.
    """
    store = SpendStore()
    found = store.request_shown(job.run_id, key)
    if found is not None:
        request_id, payload = found
        gate = store.gate(job.run_id, require_estimate(job), min_hold(job))
        update = {"status": "awaiting_approval", "pending_request_id": request_id, "gate": gate}
        return job.model_copy(update=update), payload
    if job.status != "awaiting_approval":
        raise GuardRefusal(f"there is nothing to ask a person (status: {job.status})")
    asked = job.model_copy(update={"pending_request_id": f"req-{job.run_id}-{key}"})
    payload = shown(asked)
    store.open_request(job.run_id, binding(job), require_estimate(job).estimated_cost_usd, key, payload)
    return asked, payload


def already_asked(job: JobState, key: str) -> bool:
    return SpendStore().request_shown(job.run_id, key) is not None


def decide(job: JobState, decision: Decision, decided_by: str, *, answer_id: str) -> JobState:
    """Apply a person's answer to the pending request, once. Approving never overrides a refusal.

    Optimize leaves the job in "planning" with the proposed spec estimated: it goes back through the gate.
    """
    spec, est = require_spec(job), require_estimate(job)
    if job.pending_request_id is None or job.status != "awaiting_approval":
        raise GuardRefusal(f"there is no pending approval to answer (status: {job.status})")
    answered = SpendStore().answer(
        job.pending_request_id,
        answer_id=answer_id,
        decision=decision,
        decided_by=decided_by,
        estimate=est,
        min_hold_usd=min_hold(job),
    )
    job = job.model_copy(update={"pending_request_id": None, "decision": decision, "decided_by": decided_by})
    if decision == "cancel":
        job = job.model_copy(update={"status": "cancelled"})
        job.record("approval", "completed", f"cancelled by {decided_by}; nothing will run", decided_by=decided_by)
        return job
    if decision == "optimize":
        job.record("approval", "completed", f"optimize requested by {decided_by}", decided_by=decided_by)
        spent = SpendStore().money(job.thread).committed_usd
        proposal = optimize_spec(spec, job.policy, spent_usd=spent)
        job.record("optimize", "completed", proposal.summary, changes=proposal.changes)
        return estimate_job(set_spec(job, proposal.spec, source="optimizer"))
    if answered.grant is None:
        reason = answered.gate.reason if answered.gate else "the gate refused"
        job = job.model_copy(update={"status": "refused", "gate": answered.gate or job.gate, "approval": None})
        job.record("approval", "failed", f"approval by {decided_by} refused: a person cannot lift the gate ({reason})")
        return job
    approval = _approval(answered.grant)
    job = job.model_copy(update={"approval": approval, "status": "approved"})
    job.record(
        "approval",
        "completed",
        f"approved by {decided_by} for ${est.estimated_cost_usd:.4f}",
        approval=approval.model_dump(mode="json"),
    )
    return job


def evaluate_job(job: JobState, thresholds: Any = None) -> JobState:
    spec = require_spec(job)
    if not job.attempts or job.attempts[-1].status != "succeeded" or job.trained_data is None:
        raise GuardRefusal("there is no successful training attempt to evaluate")
    job.record("evals", "started", "evaluating the trained model against the base model")
    result = run_evals(
        spec,
        job.attempts[-1],
        base_model_path=resolve_model(spec.model_name).path,
        dataset_path=Path(job.trained_data.train_path),
        thresholds=thresholds or EvalThresholds.from_config(),
    )
    status: JobStatus = "succeeded" if result.passed else "failed"
    job = job.model_copy(update={"eval_result": result, "status": status})
    failed = [c.name for c in result.checks if not c.passed]
    job.record(
        "evals",
        "completed" if result.passed else "failed",
        "all checks passed" if result.passed else f"failed checks: {', '.join(failed)}",
        checks=[c.model_dump(mode="json") for c in result.checks],
        metrics=result.metrics,
    )
    return job


def remediate_job(job: JobState) -> JobState:
    """Heal the last failure by the rules, least invasive first; refuses past max_retries.

    The healed spec is estimated but not approved: it goes back through the gate like any other spec.
    """
    spec = require_spec(job)
    if not job.attempts or job.attempts[-1].status == "succeeded":
        raise GuardRefusal("the last attempt did not fail; there is nothing to remediate")
    if job.remediations and job.remediations[-1]["attempt"] == len(job.attempts):
        raise GuardRefusal(
            f"attempt {len(job.attempts)} was already remediated; approve and run the healed spec before healing again"
        )
    last = job.attempts[-1]
    failure = last.failure_class or "other"
    diverged = failure == "nan_loss"
    found = last_good_checkpoint(last.output_dir, stable_only=diverged)
    if found:
        point = ResumePoint(step=found[0], path=str(found[1]), from_attempt=len(job.attempts), loss=found[2])
    else:
        # No checkpoint of its own: the one it started from is still good, unless training diverged from it.
        point = None if diverged else job.resume
    plan = plan_remediation(
        spec,
        failure,
        retry_count=job.retry_count,
        max_retries=job.max_retries,
        checkpoint_step=point.step if point else None,
    )
    resume = point if point and can_resume(spec, plan.new_spec) else None
    explanation = plan.explanation + (
        f"; the retry resumes from the checkpoint at step {resume.step} (attempt {resume.from_attempt})"
        if resume
        else "; the retry starts from step 0"
    )
    remediation = {
        "attempt": len(job.attempts),
        "failure": failure,
        "rule": plan.rule,
        "changes": {k: list(v) for k, v in plan.changes.items()},
        "explanation": explanation,
    }
    job = job.model_copy(
        update={
            "retry_count": job.retry_count + 1,
            "status": "healing",
            "remediations": [*job.remediations, remediation],
            "resume": resume,
        }
    )
    job.record("remediate", "completed", f"retry {job.retry_count}/{job.max_retries}: {explanation}", **remediation)
    job = estimate_job(set_spec(job, plan.new_spec, source="remediation"))
    if job.resume is not None:  # the saving is known once the retry is priced
        healed = {**remediation, "resume": job.resume.model_dump(mode="json")}
        job = job.model_copy(update={"remediations": [*job.remediations[:-1], healed]})
    return job


def report_job(job: JobState, outcome: str | None = None) -> JobState:
    """Write the report, then close the job in the spend store: nothing more may start in it."""
    spec = require_spec(job)
    plot_loss_curve(job.attempts, job.folder.loss_curve_path)
    gate = {
        "outcome": job.gate.outcome if job.gate else "not evaluated",
        "reason": job.gate.reason if job.gate else "",
        "decision": job.decision,
        "decided_by": job.decided_by,
        "approved_usd": job.approval.approved_usd if job.approval else None,
    }
    final = outcome or job.status
    path = write_report(
        job.folder,
        spec=spec,
        policy=job.policy,
        estimate=job.estimate,
        gate=gate,
        attempts=job.attempts,
        remediations=job.remediations,
        eval_result=job.eval_result,
        events=job.folder.events(),
        outcome=final,
        preflight=job.preflight,
    )
    job = job.model_copy(update={"report_path": str(path)})
    job.record("report", "completed", f"report written to {path}", path=str(path))
    SpendStore().close(job.run_id, f"ended {final}; report written")
    return job


def require_spec(job: JobState) -> TrainingSpec:
    if job.spec is None:
        raise AegisError("there is no training spec yet")
    return job.spec


def require_estimate(job: JobState) -> CostEstimate:
    if job.estimate is None or job.spec is None or job.estimate_spec_hash != job.spec.spec_hash():
        raise GuardRefusal("there is no cost estimate for the current spec; estimate it first")
    return job.estimate
