"""After an attempt: evaluate what it trained, or heal what failed by the rules (bounded)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tools.core.errors import AegisError, GuardRefusal
from tools.core.spec import EvalCheck, EvalResult
from tools.core.status import AttemptStatus, JobStatus
from tools.evals.model_evals import run_evals
from tools.evals.progress import EvalProgress
from tools.evals.thresholds import EvalThresholds
from tools.inputs.local_models import resolve_model
from tools.inputs.prepared import training_records
from tools.job.planning import estimate_job, set_spec
from tools.job.state import JobState, ProgressFn, require_spec
from tools.plan.checkpoints import ResumePoint, can_resume
from tools.plan.remediation import Remediation, plan_remediation
from tools.run.checkpoint_files import last_good_checkpoint


def evaluate_job(
    job: JobState,
    thresholds: Any = None,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    heldout: list[dict[str, Any]] | None = None,
) -> JobState:
    """Evaluate the trained model; the job ends succeeded, or evals_failed (trained, but the evals failed).

    Evals that cannot run (a broken model folder, a stop asked for, an error, a model whose own code cannot be
    isolated here) are a failed ``evals_ran`` check with the reason, never a traceback and never a job that reads
    as if its training had failed. The event says what contained the eval worker (``isolation``; None: not started).
    ``heldout``, when given, replaces the rows the run held out (evaluating a finished run on other data).
    """
    spec = require_spec(job)
    if not job.attempts or job.attempts[-1].status != AttemptStatus.SUCCEEDED or job.prepared is None:
        raise GuardRefusal("there is no successful training attempt to evaluate")
    t = thresholds or EvalThresholds.from_config()
    job.record(
        "evals",
        "started",
        f"evaluating the trained model against the base model: up to {t.max_heldout_rows} held-out rows, "
        f"{t.n_generations} generations of at most {t.max_new_tokens} tokens",
        thresholds=t.model_dump(mode="json"),
    )
    progress = EvalProgress(on_progress, should_stop)
    try:
        result = run_evals(
            spec,
            job.attempts[-1],
            base_model_path=resolve_model(spec.model_name).path,
            train_records=training_records(job.prepared.data),
            thresholds=t,
            progress=progress,
            heldout=heldout,
        )
    except Exception as exc:  # the training's model stays; the evals' failure is the job's outcome, with its reason
        reason = str(exc) if isinstance(exc, AegisError) else f"{type(exc).__name__}: {exc}"
        result = EvalResult(
            passed=False,
            checks=[EvalCheck(name="evals_ran", passed=False, detail=f"the evals could not run: {reason[:500]}")],
            metrics=progress.timing_metrics(),
        )
    status = JobStatus.SUCCEEDED if result.passed else JobStatus.EVALS_FAILED
    job = job.model_copy(update={"eval_result": result, "status": status})
    failed = [c.name for c in result.checks if not c.passed and c.severity == "gate"]
    job.record(
        "evals",
        "completed" if result.passed else "failed",
        eval_summary(result),
        checks=[c.model_dump(mode="json") for c in result.checks],
        metrics=result.metrics,
        failed_checks=failed,
        eval_seconds=result.metrics.get("eval_seconds"),
        isolation=progress.isolation.kind.value if progress.isolation is not None else None,
    )
    return job


def eval_summary(result: EvalResult) -> str:
    """The evals' outcome in a line: passed (with any warning and its detail), or why they failed."""
    if not result.passed:
        return f"trained, but the evals failed: {eval_failure(result)}"
    warned = [c for c in result.checks if c.severity == "warning" and not c.passed]
    if not warned:
        return "all checks passed"
    return "all gate checks passed; warning: " + "; ".join(f"{c.name}: {c.detail}" for c in warned)


def eval_failure(result: EvalResult) -> str:
    """Why the evals failed, in a line: the checks that failed, or why they could not run."""
    failed = [c for c in result.checks if not c.passed and c.severity == "gate"]
    ran = next((c for c in failed if c.name == "evals_ran"), None)
    if ran is not None:
        return ran.detail
    return "failed checks: " + ", ".join(c.name for c in failed) if failed else "no check failed"


def remediate_job(job: JobState) -> JobState:
    """Heal the last failure by the rules, least invasive first; refuses past max_retries.

    The healed spec is estimated but not approved: it goes back through the gate like any other spec.
    """
    spec = require_spec(job)
    if not job.attempts or job.attempts[-1].status == AttemptStatus.SUCCEEDED:
        raise GuardRefusal("the last attempt did not fail; there is nothing to remediate")
    if job.remediations and job.remediations[-1].attempt == len(job.attempts):
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
    remediation = Remediation(
        attempt=len(job.attempts),
        failure=failure,
        rule=plan.rule,
        changes={k: list(v) for k, v in plan.changes.items()},
        explanation=explanation,
    )
    job = job.model_copy(
        update={
            "retry_count": job.retry_count + 1,
            "status": JobStatus.HEALING,
            "remediations": [*job.remediations, remediation],
            "resume": resume,
        }
    )
    job.record(
        "remediate",
        "completed",
        f"retry {job.retry_count}/{job.max_retries}: {explanation}",
        **remediation.model_dump(mode="json", exclude={"resume"}),
    )
    job = estimate_job(set_spec(job, plan.new_spec, source="remediation"))
    if job.resume is not None:  # the saving is known once the retry is priced
        healed = remediation.model_copy(update={"resume": job.resume})
        job = job.model_copy(update={"remediations": [*job.remediations[:-1], healed]})
    return job
