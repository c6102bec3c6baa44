"""The last step: the report, the job's final record, the trackers (MLflow, TensorBoard); then the spend store
closes the job."""

from __future__ import annotations

from pathlib import Path

from tools.core.errors import AegisError
from tools.core.money import usd
from tools.core.paths import runs_dir
from tools.core.runlog import RunFolder
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
    final = outcome or job.status
    path = write_job_report(job, final)
    job = job.model_copy(update={"report_path": str(path)})
    job.record("report", "completed", f"report written to {path}", path=str(path))
    ended = job.model_copy(update={"status": JobStatus(final)}) if final in set(JobStatus) else job
    job.folder.write_json(JOB_FILE, ended.model_dump(mode="json"))
    job.folder.write_json(PROVENANCE_FILE, provenance().model_dump(mode="json"))
    if job.attempts:
        track_job(job, str(final))
    spend_store().close(job.run_id, f"ended {final}; report written")
    return job


def write_job_report(job: JobState, outcome: str) -> Path:
    """REPORT.md (and its loss chart) from what the job holds now, under the outcome given."""
    plot_loss_curve(job.attempts, job.folder.loss_curve_path)
    gate = {
        "outcome": job.gate.outcome if job.gate else "not evaluated",
        "reason": job.gate.reason if job.gate else "",
        "decision": job.decision,
        "decided_by": job.decided_by,
        "approved_usd": job.approval.approved_usd if job.approval else None,
    }
    return write_report(
        job.folder,
        spec=require_spec(job),
        policy=job.policy,
        estimate=job.estimate,
        gate=gate,
        attempts=job.attempts,
        remediations=job.remediations,
        eval_result=job.eval_result,
        events=job.folder.events(),
        outcome=outcome,
        preflight=job.preflight,
        quote_hash=job.quote.quote_hash if job.quote else None,
        continued=job.continued,
        lineage=lineage_lines(job),
    )


def lineage_lines(job: JobState) -> list[str]:
    """The report's lines on where the run came from: its parent run, each continue and what it saved."""
    lines = []
    if job.warm_start is not None:
        warm = job.warm_start
        what = "LoRA adapter" if warm.kind == "adapter" else "full weights"
        lines.append(f"Started from run `{warm.run_id}`'s trained {what} ({warm.method} of {warm.model_name}).")
    for point in job.continued:
        lines.append(
            f"Continued with `aegis continue` from the checkpoint at step {point.step} (attempt {point.from_attempt}):"
            f" {usd(point.saved_usd)} and {point.saved_seconds / 60:.1f} min less than starting again (estimate)."
        )
    lost = [n for n, a in enumerate(job.attempts, 1) if (a.error_message or "").startswith("lost:")]
    if lost:
        lines.append(
            f"Attempt {', '.join(map(str, lost))} was lost with its machine and reconciled when aegis next started: "
            "billed up to its last progress record, the rest of its hold released."
        )
    return lines


def parent_tags(job: JobState) -> dict[str, str]:
    """The tracker tags that name the run's parent: its id, and its MLflow run (MLflow nests the child under it)."""
    if job.warm_start is None:
        return {}
    parent = job.warm_start.run_id
    tags = {"aegis.parent_run": parent}
    logged = [
        e for e in RunFolder(runs_dir() / parent).events() if e.phase == "tracking" and e.data.get("mlflow_run_id")
    ]
    if logged:
        tags["mlflow.parentRunId"] = str(logged[-1].data["mlflow_run_id"])
    return tags


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
            data=job.prepared.data if job.prepared else None,
            extra_tags={"aegis.thread_id": job.thread, **parent_tags(job)},
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
