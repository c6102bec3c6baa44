"""`aegis continue RUN`: a run that stopped goes on from its newest verified checkpoint.

The continue is a new attempt of the same run, with the same spec and the same data (their digest is checked
first), priced for the steps left and put through the gate with its own approval: the store reopens the run
for it only when nothing of it still runs, turns auto-approval off for it, and lets one continue at a time
hold it. A run that finished is built on with ``--from`` instead (a new run, tools/use/warm_start.py).
"""

from __future__ import annotations

import os

from tools.core.errors import AegisError, GuardRefusal
from tools.core.money import usd
from tools.core.person import person_or_cli
from tools.core.status import JobStatus
from tools.inputs.datafile import data_digest
from tools.inputs.local_models import resolve_model
from tools.inputs.model_identity import model_fingerprint
from tools.job.pipeline import AskFn, through_gate, train_approved
from tools.job.planning import estimate_job
from tools.job.state import JobState, ProgressFn, require_spec
from tools.plan.checkpoints import ResumePoint
from tools.policy.store import spend_store
from tools.run.checkpoint_files import last_good_checkpoint
from tools.use.runs import RunRecord, find_run

CONTINUABLE = frozenset({JobStatus.INTERRUPTED, JobStatus.FAILED, JobStatus.REFUSED})


def continue_pipeline(
    ref: str,
    *,
    ask: AskFn,
    on_progress: ProgressFn | None = None,
    max_budget_usd: float | None = None,
    person: str | None = None,
) -> JobState:
    """Continue the run ``ref`` names to a report: checks, reopen, price, gate, train, evals, heal, report.

    max_budget_usd tightens the run's hard limit for the continue (never raises it)."""
    job = start_continue(find_run(ref), max_budget_usd=max_budget_usd, person=person)
    from_gate = through_gate(job, ask)
    return train_approved(from_gate, ask=ask, on_progress=on_progress)


def start_continue(record: RunRecord, *, max_budget_usd: float | None = None, person: str | None = None) -> JobState:
    """The stopped run, reopened and priced from its newest verified checkpoint, ready for the gate.

    Refused in one line (nothing billed, nothing changed) when it cannot be continued, or when ``person`` (the
    CLI's, by default) is not whose it is: a continue spends against the run's person and thread.
    """
    job = continuable(record)
    point = newest_checkpoint(job)
    store = spend_store()
    owner, asking = store.job(job.run_id).person, person_or_cli(person)
    if owner and owner != asking:
        raise GuardRefusal(
            f"run {job.run_id} is {owner}'s; its continue would spend against their limits, so only {owner} may "
            f"continue it (you are {asking}). Start your own run, or build on it once it has finished"
        )
    store.reopen(job.run_id, pid=os.getpid())
    try:
        if max_budget_usd is not None:
            job = job.model_copy(
                update={"policy": store.tighten(job.run_id, job.policy.tightened(max_budget_usd)).policy}
            )
        return _priced(_reset(job, point))
    except BaseException as exc:
        store.close(job.run_id, f"the continue stopped before training: {str(exc)[:200] or type(exc).__name__}")
        raise


def continuable(record: RunRecord) -> JobState:
    """The run's job when it stopped with something to continue, on the data and model it trained; else why not."""
    job, run = record.job, record.run_id
    if job is None:
        raise AegisError(
            f"run {run} has not ended (no job record): it is still running or paused at the gate; `aegis runs` "
            "shows how each run stands"
        )
    if job.status in (JobStatus.SUCCEEDED, JobStatus.EVALS_FAILED):
        raise GuardRefusal(
            f"run {run} finished ({job.status}); only a run that stopped is continued. To train more on it, start a "
            f"new run from its weights: aegis train SPEC --from {run}"
        )
    if job.status == JobStatus.CANCELLED:
        raise GuardRefusal(f"run {run} was cancelled; a cancelled run is not continued: make a new request")
    if not job.attempts:
        raise GuardRefusal(f"run {run} never started training ({job.status}); there is nothing to continue")
    if job.status not in CONTINUABLE:
        raise GuardRefusal(f"run {run} is {job.status}: it has not stopped, so it cannot be continued")
    _same_data(job)
    _same_model(job)
    return job


def _same_data(job: JobState) -> None:
    spec, prepared = require_spec(job), job.prepared
    if prepared is None:
        raise GuardRefusal(f"run {job.run_id} has no record of the data it trained on; it cannot be continued")
    change = prepared.data.change()
    if change is None:
        return
    try:
        now = data_digest(spec.dataset_path, spec.eval_dataset_path)
    except (OSError, AegisError):
        now = None
    if now != prepared.data.digest:
        was = prepared.data.digest[:12]
        raise GuardRefusal(
            f"the training data changed since run {job.run_id} trained ({change}; its digest was {was}"
            f"{f', now {now[:12]}' if now else ''}): a continue trains on the same data. Restore it, or start a new "
            f"run from this one's checkpoint weights with --from {job.run_id} once it has finished"
        )


def _same_model(job: JobState) -> None:
    spec = require_spec(job)
    if job.model_fingerprint is None:
        return
    now = model_fingerprint(resolve_model(spec.model_name).path)
    if now != job.model_fingerprint:
        raise GuardRefusal(
            f"the model {spec.model_name} is not the one run {job.run_id} trained (its config or weights changed "
            f"since, {job.model_fingerprint} → {now}): its checkpoints would not fit. Restore that model, or start "
            "a new run"
        )


def newest_checkpoint(job: JobState) -> ResumePoint | None:
    """The newest verified checkpoint of the run's current optimisation: the last attempt, and the attempts it
    resumed from, back to the one that started from step 0 (a retry that could not resume began anew)."""
    stable_only = job.attempts[-1].failure_class == "nan_loss"
    found: ResumePoint | None = None
    for number in range(len(job.attempts), 0, -1):
        attempt = job.attempts[number - 1]
        point = last_good_checkpoint(attempt.output_dir, stable_only=stable_only)
        if point is not None and (found is None or point[0] > found.step):
            found = ResumePoint(step=point[0], path=str(point[1]), from_attempt=number, loss=point[2])
        if not attempt.resumed_from_step:
            break
    return found


def _reset(job: JobState, point: ResumePoint | None) -> JobState:
    job = job.model_copy(
        update={
            "status": JobStatus.PLANNING,
            "resume": point,
            "gate": None,
            "approval": None,
            "decision": None,
            "decided_by": None,
            "rendered": None,
            "pending_request_id": None,
            "eval_result": None,
            "report_path": None,
            "retry_count": 0,
        }
    )
    where = (
        f"from the checkpoint at step {point.step} (attempt {point.from_attempt}, loss {point.loss:.4f})"
        if point is not None and point.loss is not None
        else f"from the checkpoint at step {point.step} (attempt {point.from_attempt})"
        if point is not None
        else "from step 0: no verified checkpoint was left"
    )
    job.record("continue", "started", f"continuing run {job.run_id} {where}", resume_step=point.step if point else 0)
    return job


def _priced(job: JobState) -> JobState:
    job = estimate_job(job)
    point, est = job.resume, job.estimate
    assert est is not None
    bd = est.cost_breakdown
    if point is None:
        job.record("continue", "completed", f"the continue starts again from step 0: {usd(est.estimated_cost_usd)}")
        return job
    job = job.model_copy(update={"continued": [*job.continued, point]})
    job.record(
        "continue",
        "completed",
        f"the continue trains the {bd.total_steps - point.step} steps left of {bd.total_steps}: "
        f"{usd(est.estimated_cost_usd)} and {est.estimated_duration_min:.1f} min, {usd(point.saved_usd)} and "
        f"{point.saved_seconds / 60:.1f} min less than starting again",
        resume=point.model_dump(mode="json"),
    )
    return job
