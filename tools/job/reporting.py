"""The last step: the report, the job's final record, the trackers (MLflow, TensorBoard); then the spend store
closes the job."""

from __future__ import annotations

from tools.core.errors import AegisError
from tools.core.status import JobStatus
from tools.job.state import JobState, require_spec
from tools.policy.store import spend_store
from tools.report.provenance import provenance
from tools.report.report import plot_loss_curve, write_report
from tools.report.tracking import collect, redact_uri, track

JOB_FILE = "job.json"  # the job as it ended: what `aegis runs`, export and compare read
PROVENANCE_FILE = "provenance.json"  # the library versions and commit that trained it, for its model card


def report_job(job: JobState, outcome: str | None = None) -> JobState:
    """Write the report and the job's final record, log the run to the trackers, then close the job in the spend
    store: nothing more may start in it."""
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
        quote_hash=job.quote.quote_hash if job.quote else None,
    )
    job = job.model_copy(update={"report_path": str(path)})
    job.record("report", "completed", f"report written to {path}", path=str(path))
    ended = job.model_copy(update={"status": JobStatus(final)}) if final in set(JobStatus) else job
    job.folder.write_json(JOB_FILE, ended.model_dump(mode="json"))
    job.folder.write_json(PROVENANCE_FILE, provenance().model_dump(mode="json"))
    if job.attempts:
        track_job(job, str(final))
    spend_store().close(job.run_id, f"ended {final}; report written")
    return job


def track_job(job: JobState, outcome: str) -> None:
    """Log the run to MLflow and TensorBoard; a tracker that fails is an event and a line, never a failed run."""
    spec = require_spec(job)
    try:
        run = collect(
            job.folder,
            spec=spec,
            attempts=job.attempts,
            eval_result=job.eval_result,
            outcome=outcome,
            data_digest=job.data_digest,
            extra_tags={"aegis.thread_id": job.thread},
        )
        done = track(run)
    except Exception as exc:  # MLflow, a server, a disk: the run is done and reported whatever they say
        reason = str(exc) if isinstance(exc, AegisError) else f"{type(exc).__name__}: {exc}"
        job.record("tracking", "failed", f"the run could not be logged to the trackers: {redact_uri(reason)[:500]}")
        return
    where = []
    if done.mlflow_run_id:
        where.append(f"MLflow run {done.mlflow_run_id} in {done.mlflow_uri}")
    if done.tensorboard_dir:
        where.append(f"TensorBoard events in {done.tensorboard_dir}")
    if where:
        job.record("tracking", "completed", "logged to " + "; ".join(where), **done.model_dump(mode="json"))
