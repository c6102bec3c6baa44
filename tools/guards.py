"""The one place that answers "may this run start?".

Every executor tool calls ``may_start_run`` with the job as the graph holds it; nothing
the model writes in its tool arguments reaches this decision.
"""

from __future__ import annotations

from tools.errors import GuardRefusal
from tools.gate import check_approval
from tools.job import JobState, preflight_refusal
from tools.ledger import check_can_spend


def may_start_run(job: JobState) -> None:
    """Raise GuardRefusal naming the first reason the next attempt may not start."""
    if job.status in ("cancelled", "refused"):
        raise GuardRefusal(f"the run was {job.status}; nothing may start. Make a new request to try again.")
    if job.spec is None:
        raise GuardRefusal("there is no training spec yet; parse the request first")
    if job.estimate is None or job.estimate_spec_hash != job.spec.spec_hash():
        raise GuardRefusal("there is no cost estimate for the current spec; call estimate_cost first")
    stopped = preflight_refusal(job)
    if stopped:
        raise GuardRefusal(stopped)
    check_approval(job.approval, job.spec, job.estimate)
    if len(job.attempts) > job.max_retries:
        raise GuardRefusal(
            f"{len(job.attempts)} attempts already ran and max_retries is {job.max_retries}; no further attempt may start"
        )
    check_can_spend(job.ledger, job.policy, job.estimate.estimated_cost_usd)
