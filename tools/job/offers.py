"""When the gate refuses a job as asked (it does not fit, or it is over the hard limit), the optimizer's offer.

The optimizer (``tools.plan.optimizer``) prices every catalog GPU and lever; its cheapest fitting spec within
the limits becomes the job's spec, estimated, and the job's policy stops auto-approving: the person never
asked for that spec, so a person must take it (approve at the gate, in the CLI or Chainlit) before anything
runs. The candidates table goes with it, on record as an ``optimize`` event bound to the proposed spec's hash,
so whatever shows the approval (``ApprovalRequest.optimization``) shows the table with it.
"""

from __future__ import annotations

from agent.approval import OptimizationOffer
from tools.core.errors import AegisError
from tools.core.status import JobStatus
from tools.job.planning import estimate_job, preflight_refusal, set_spec
from tools.job.state import JobState
from tools.plan.optimizer import optimize_spec
from tools.policy.store import SpendStore


def refusal_to_optimize(job: JobState) -> str | None:
    """Why the gate refused, when the optimizer may help: the job does not fit, or it is over the hard limit.

    None for any other refusal (pre-flight failed, the job is closed): changing GPUs or levers cannot fix those.
    """
    if job.status != JobStatus.REFUSED or job.gate is None or job.estimate is None or preflight_refusal(job):
        return None
    gate = job.gate
    if not gate.fits or gate.spent_usd + gate.estimate_usd > gate.max_budget_usd:
        return gate.reason
    return None


def offer_optimization(job: JobState) -> tuple[JobState, OptimizationOffer | None, str]:
    """The job with the optimizer's spec set (a person must approve it), and the offer; or the job, None and why not."""
    reason = refusal_to_optimize(job)
    if reason is None or job.spec is None:
        return job, None, ""
    spent = SpendStore().money(job.thread).committed_usd
    stats = job.prepared.data.stats if job.prepared else None
    try:
        proposal = optimize_spec(job.spec, job.policy, spent_usd=spent, dataset_stats=stats)
    except AegisError as exc:
        return job, None, f"the optimizer found nothing that fits: {exc}"
    over = spent + proposal.estimate.estimated_cost_usd > job.policy.max_budget_usd
    offer = OptimizationOffer(
        refused_because=reason,
        summary=proposal.summary,
        changes=proposal.changes,
        candidates=proposal.candidates,
        spec_hash=proposal.spec.spec_hash(),
    )
    if over or not proposal.estimate.fits or not proposal.changes:
        why = f"its cheapest spec still cannot pass the gate ({proposal.summary})"
        return job, None, f"the optimizer tried every GPU and lever; {why}\n\n{offer.table()}"
    store = SpendStore()
    manual = job.policy.model_copy(update={"allow_auto_approve": False})  # the person must take the change
    job = job.model_copy(update={"policy": store.tighten(job.run_id, manual).policy})
    job = estimate_job(set_spec(job, proposal.spec, source="optimizer (the job as asked was refused)"))
    job.record("optimize", "completed", offer.text().splitlines()[0], offer=offer.model_dump(mode="json"))
    return job, offer, ""


def offer_for(job: JobState) -> OptimizationOffer | None:
    """The optimizer's offer that produced the job's current spec, if one did."""
    if job.spec is None:
        return None
    current = job.spec.spec_hash()
    for event in reversed(job.folder.events()):
        raw = event.data.get("offer") if event.phase == "optimize" else None
        if raw:
            offer = OptimizationOffer.model_validate(raw)
            return offer if offer.spec_hash == current else None
    return None
