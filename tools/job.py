"""The job engine: one serialisable record of a fine-tuning job and the steps that move it.

Both the deterministic pipeline (``aegis train``) and the agent's guarded tools call these
steps, so a refusal means the same thing in both. Each step writes its events to the
run's append-only log before it returns.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.checkpointing import ResumePoint
from tools.errors import AegisError, GuardRefusal
from tools.gate import ApprovalRecord, GateOutcome, evaluate_gate, grant_approval
from tools.ledger import SpendLedger
from tools.paths import resolve_dataset_path
from tools.preflight import PreflightReport
from tools.runlog import RunFolder
from tools.spec import (
    BudgetPolicy,
    CostEstimate,
    Decision,
    EvalResult,
    ExecutionResult,
    RunStatus,
    TrainingSpec,
)

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
    """Everything the guards need, serialisable so LangGraph can checkpoint it."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    run_dir: str
    spec: TrainingSpec | None = None
    policy: BudgetPolicy = Field(default_factory=BudgetPolicy)
    estimate: CostEstimate | None = None
    estimate_spec_hash: str | None = None
    local_estimate: CostEstimate | None = None
    preflight: PreflightReport | None = None
    checkpoint_every: int | None = None
    resume: ResumePoint | None = None
    gate: GateOutcome | None = None
    approval: ApprovalRecord | None = None
    decision: Decision | None = None
    decided_by: str | None = None
    ledger: SpendLedger = Field(default_factory=SpendLedger)
    retry_count: int = 0
    max_retries: int = Field(default=3, ge=0, le=10)
    rendered: RenderedRef | None = None
    attempts: list[ExecutionResult] = Field(default_factory=list)
    remediations: list[dict[str, Any]] = Field(default_factory=list)
    eval_result: EvalResult | None = None
    report_path: str | None = None
    status: JobStatus = "planning"
    executor: Executor = "local"
    local_memory_limit_mb: int | None = None

    @property
    def folder(self) -> RunFolder:
        return RunFolder(Path(self.run_dir))

    def record(self, phase: str, status: RunStatus, message: str, **data: Any) -> None:
        self.folder.record(phase, status, message, data)


def new_job(
    policy: BudgetPolicy,
    *,
    max_retries: int = 3,
    executor: Executor = "local",
    run_id: str | None = None,
    local_memory_limit_mb: int | None = None,
) -> JobState:
    folder = RunFolder.create(run_id)
    job = JobState(
        run_id=folder.run_id,
        run_dir=str(folder.root),
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
    )
    return job


def set_spec(job: JobState, spec: TrainingSpec, *, source: str) -> JobState:
    """Adopt a spec after checking its data paths; any approval for an earlier spec stops matching."""
    from tools.checkpointing import can_resume

    resolve_dataset_path(spec.dataset_path)
    if spec.eval_dataset_path:
        resolve_dataset_path(spec.eval_dataset_path)
    resume = job.resume if job.resume and job.spec and can_resume(job.spec, spec) else None
    job = job.model_copy(update={"spec": spec, "status": "planning", "rendered": None, "resume": resume})
    job.folder.write_json("spec.json", spec.model_dump(mode="json"))
    job.record(
        "spec", "completed", f"spec set by {source}", spec_hash=spec.spec_hash(), spec=spec.model_dump(mode="json")
    )
    return job


def estimate_job(job: JobState) -> JobState:
    """Estimate the spec on its target GPU and on the local CPU, each corrected by the ledger of actuals."""
    from tools.actuals import apply_learning, learned_error, read_actuals
    from tools.checkpointing import checkpoint_interval, max_loss_share, price_resumed
    from tools.estimator import estimate, read_dataset_stats, startup_seconds
    from tools.model_config import load_model_config, model_stats

    spec = _require_spec(job)
    job.record("estimate", "started", f"estimating {spec.method} of {spec.model_name} on {spec.target_gpu}")
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
            "checkpoint_every": every,
            "resume": resume,
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
        resume=resume.model_dump(mode="json") if resume else None,
    )
    return preflight_job(job)


def preflight_job(job: JobState) -> JobState:
    """The free local checks for the current spec, run with every estimate so no one is asked to pay for a dud."""
    from tools.preflight import run_preflight

    spec = _require_spec(job)
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
    spec = _require_spec(job)
    if job.preflight is None or job.preflight.spec_hash != spec.spec_hash():
        return "pre-flight has not run for the current spec; estimate it first"
    return None if job.preflight.passed else job.preflight.summary()


def gate_job(job: JobState) -> JobState:
    """Ask the FinOps gate; auto-approval is granted here, and only here, by policy."""
    spec, estimate = _require_spec(job), _require_estimate(job)
    outcome = evaluate_gate(estimate, job.policy, job.ledger.spent_usd)
    stopped = preflight_refusal(job)
    if stopped:
        outcome = outcome.model_copy(update={"outcome": "refused", "reason": stopped})
    update: dict[str, Any] = {"gate": outcome}
    if outcome.outcome == "approved":
        update |= {
            "approval": grant_approval(spec, estimate, "policy:auto"),
            "status": "approved",
            "decision": "approve",
            "decided_by": "policy:auto",
        }
    elif outcome.outcome == "refused":
        update |= {"status": "refused", "approval": None}
    else:
        update |= {"status": "awaiting_approval", "approval": None}
    job = job.model_copy(update=update)
    status: RunStatus = "failed" if outcome.outcome == "refused" else "completed"
    job.record("gate", status, f"{outcome.outcome}: {outcome.reason}", gate=outcome.model_dump(mode="json"))
    return job


def decide(job: JobState, decision: Decision, decided_by: str) -> JobState:
    """Apply a person's answer at the gate. Approving never overrides a refusal.

    Optimize leaves the job in "planning" with the proposed spec estimated: it goes back through the gate.
    """
    spec, estimate = _require_spec(job), _require_estimate(job)
    if decision == "cancel":
        job = job.model_copy(update={"status": "cancelled", "decision": "cancel", "decided_by": decided_by})
        job.record("approval", "completed", f"cancelled by {decided_by}; nothing will run", decided_by=decided_by)
        return job
    if decision == "optimize":
        from tools.optimizer import optimize_spec

        job.record("approval", "completed", f"optimize requested by {decided_by}", decided_by=decided_by)
        proposal = optimize_spec(spec, job.policy, spent_usd=job.ledger.spent_usd)
        job.record("optimize", "completed", proposal.summary, changes=proposal.changes)
        job = set_spec(job, proposal.spec, source="optimizer")
        return estimate_job(job)
    if job.gate is None or job.status != "awaiting_approval":
        raise GuardRefusal(f"there is no pending approval to answer (status: {job.status})")
    if job.gate.outcome != "needs_human":
        raise GuardRefusal(f"the gate {job.gate.outcome} this run; a person's approval cannot change that")
    approval = grant_approval(spec, estimate, decided_by)
    job = job.model_copy(
        update={"approval": approval, "status": "approved", "decision": "approve", "decided_by": decided_by}
    )
    job.record(
        "approval",
        "completed",
        f"approved by {decided_by} for ${estimate.estimated_cost_usd:.4f}",
        approval=approval.model_dump(mode="json"),
    )
    return job


def render_job(job: JobState) -> JobState:
    from tools.local_models import resolve_model
    from tools.render import render_script

    spec = _require_spec(job)
    attempt = len(job.attempts) + 1
    workdir = job.folder.attempt_dir(attempt)
    model = resolve_model(spec.model_name)
    eval_path = resolve_dataset_path(spec.eval_dataset_path) if spec.eval_dataset_path else None
    device = "cuda" if job.executor == "modal" else "cpu"
    rendered = render_script(
        spec,
        workdir,
        model_path=model.path,
        dataset_path=resolve_dataset_path(spec.dataset_path),
        eval_dataset_path=eval_path,
        device=device,
        extra={"checkpoint_every": job.checkpoint_every, "resume_from": job.resume.path if job.resume else None},
    )
    ref = RenderedRef(
        attempt=attempt,
        workdir=str(workdir),
        script_path=str(rendered.script_path),
        config_path=str(rendered.config_path),
        spec_hash=spec.spec_hash(),
    )
    job = job.model_copy(update={"rendered": ref})
    job.record(
        "render",
        "completed",
        f"rendered {rendered.script_path.name} for attempt {attempt}",
        script=str(rendered.script_path),
        config=str(rendered.config_path),
    )
    return job


def local_timeout_s(job: JobState) -> float:
    """Generous wall-clock limit from the CPU estimate; AEGIS_LOCAL_TIMEOUT_S overrides it.

    Local runs cost nothing, so the limit only has to catch a hung job: 4x the estimate plus 10
    minutes, at least 30 minutes (a busy laptop can run several times slower than the estimate).
    """
    if "AEGIS_LOCAL_TIMEOUT_S" in os.environ:
        return float(os.environ["AEGIS_LOCAL_TIMEOUT_S"])
    seconds = job.local_estimate.cost_breakdown.estimated_seconds if job.local_estimate else 600.0
    return max(1800.0, 4.0 * seconds + 600.0)


def run_job(job: JobState, *, on_progress: ProgressFn | None = None) -> JobState:
    """Start one attempt, only after the guard says yes, and book what it really cost."""
    from tools.actuals import record_actual
    from tools.guards import may_start_run

    may_start_run(job)
    spec, estimate = _require_spec(job), _require_estimate(job)
    if job.rendered is None or job.rendered.spec_hash != spec.spec_hash():
        job = render_job(job)
    assert job.rendered is not None
    attempt = job.rendered.attempt
    job.record("train", "started", f"attempt {attempt} on {job.executor}", attempt=attempt, spec_hash=spec.spec_hash())
    job = job.model_copy(update={"status": "running"})
    result = _execute(job, on_progress)
    ran_on = job.estimate if job.executor == "modal" else (job.local_estimate or job.estimate)
    record_actual(job.run_id, attempt, ran_on, result)
    ledger = job.ledger.record(
        attempt=attempt,
        run_id=job.run_id,
        status=result.status,
        estimated_usd=estimate.estimated_cost_usd,
        actual_usd=result.actual_cost_usd,
    )
    status: JobStatus = {"succeeded": "running", "interrupted": "interrupted"}.get(result.status, "failed")  # type: ignore[assignment]
    job = job.model_copy(
        update={"attempts": [*job.attempts, result], "ledger": ledger, "status": status, "rendered": None}
    )
    summary = result.model_dump(mode="json", exclude={"loss_curve"})
    if result.status == "succeeded":
        job.record(
            "train",
            "completed",
            f"attempt {attempt} finished: loss {result.initial_train_loss:.3f} → {result.final_train_loss:.3f}, "
            f"{result.tokens_per_s:.0f} tokens/s, {result.duration_s:.0f} s",
            result=summary,
        )
    else:
        event_status: RunStatus = "interrupted" if result.status == "interrupted" else "failed"
        job.record(
            "train",
            event_status,
            f"attempt {attempt} {result.status}: {result.failure_class} — {result.error_message or 'no error text'}",
            result=summary,
        )
    return job


def _execute(job: JobState, on_progress: ProgressFn | None) -> ExecutionResult:
    from tools.catalog import get_gpu
    from tools.render import RenderedScript

    assert job.rendered is not None and job.spec is not None and job.estimate is not None
    rendered = RenderedScript.from_paths(Path(job.rendered.script_path), Path(job.rendered.config_path))
    workdir = Path(job.rendered.workdir)
    if job.executor == "modal":
        from tools.executor_modal import run_on_modal

        return run_on_modal(
            job.spec,
            workdir,
            rendered,
            estimated_seconds=job.estimate.cost_breakdown.estimated_seconds,
            on_progress=on_progress,
        )
    from tools.executor_local import run_local

    return run_local(
        job.spec,
        workdir,
        rendered,
        timeout_s=local_timeout_s(job),
        memory_limit_mb=job.local_memory_limit_mb,
        on_progress=on_progress,
        gpu_price_usd_per_sec=get_gpu("cpu").price_usd_per_sec,
        estimated_gpu_cost_usd=job.estimate.estimated_cost_usd,
    )


def evaluate_job(job: JobState, thresholds: Any = None) -> JobState:
    from tools.evals import EvalThresholds, run_evals
    from tools.local_models import resolve_model

    spec = _require_spec(job)
    if not job.attempts or job.attempts[-1].status != "succeeded":
        raise GuardRefusal("there is no successful training attempt to evaluate")
    job.record("evals", "started", "evaluating the trained model against the base model")
    result = run_evals(
        spec,
        job.attempts[-1],
        base_model_path=resolve_model(spec.model_name).path,
        dataset_path=resolve_dataset_path(spec.dataset_path),
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
    from tools.checkpointing import can_resume, last_good_checkpoint
    from tools.remediation import plan_remediation

    spec = _require_spec(job)
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
    from tools.report import plot_loss_curve, write_report

    spec = _require_spec(job)
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
    return job


def _require_spec(job: JobState) -> TrainingSpec:
    if job.spec is None:
        raise AegisError("there is no training spec yet")
    return job.spec


def _require_estimate(job: JobState) -> CostEstimate:
    if job.estimate is None or job.spec is None or job.estimate_spec_hash != job.spec.spec_hash():
        raise GuardRefusal("there is no cost estimate for the current spec; estimate it first")
    return job.estimate
