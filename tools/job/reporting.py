"""The last step: the report, after which the spend store closes the job."""

from __future__ import annotations

from tools.job.state import JobState, require_spec
from tools.policy.store import SpendStore
from tools.report.report import plot_loss_curve, write_report


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
