"""The optimizer's offer: one rule for both ways to it, the gate's refusal and a person's Optimize.

The optimizer (``tools.plan.optimizer``, through the quote) prices every GPU something here runs and every lever;
its cheapest fitting spec within the limits becomes the job's spec, estimated, and the job's policy stops
auto-approving: the person never asked for that spec, so a person must take it (approve at the gate, in the CLI,
chat or Chainlit) before anything runs, whichever way it was proposed. The candidates table goes with it, on
record as an ``optimize`` event bound to the proposed spec's hash, so whatever shows the approval
(``ApprovalRequest.optimization``) shows the table with it.
"""

from __future__ import annotations

from tools.core.errors import AegisError
from tools.core.status import JobStatus
from tools.job.planning import estimate_job, preflight_refusal, set_spec
from tools.job.quoting import propose
from tools.job.state import JobState, require_quote
from tools.plan.optimizer import OptimizationProposal
from tools.policy.store import spend_store
from tools.report.approval import OptimizationOffer


def refusal_to_optimize(job: JobState) -> str | None:
    """Why the gate refused, when the optimizer may help: the job does not fit, or it is over the hard limit.

    None for any other refusal (pre-flight failed, the job is closed): changing GPUs or levers cannot fix those.
    """
    if job.status != JobStatus.REFUSED or job.gate is None or job.quote is None or preflight_refusal(job):
        return None
    gate = job.gate
    if not gate.fits or gate.spent_usd + gate.estimate_usd > gate.max_budget_usd:
        return gate.reason
    return None


def offer_optimization(job: JobState) -> tuple[JobState, OptimizationOffer | None, str]:
    """After a refusal: the job with the optimizer's spec set (a person must approve it), and the offer; or the
    job, None and why not."""
    reason = refusal_to_optimize(job)
    if reason is None or job.spec is None:
        return job, None, ""
    quote = require_quote(job)
    proposal = quote.offer or quote.no_offer or _propose(job)  # the quote's, unless money moved since
    if isinstance(proposal, str):
        return job, None, proposal
    return optimize_job(job, proposal, reason, source="optimizer (the job as asked was refused)")


def optimize_on_request(job: JobState, decided_by: str) -> tuple[JobState, OptimizationOffer | None, str]:
    """A person pressed Optimize at the gate: the same rule as after a refusal."""
    proposal = _propose(job)
    if isinstance(proposal, str):
        return job, None, proposal
    return optimize_job(job, proposal, f"{decided_by} asked to optimize", source=f"optimizer (asked by {decided_by})")


def _propose(job: JobState) -> OptimizationProposal | str:
    if job.prepared is None:
        raise AegisError("the data of the current spec has not been read; estimate it first")
    return propose(job.prepared, job.policy, spend_store().money(job.thread).committed_usd, job.backend_choice)


def optimize_job(
    job: JobState, proposal: OptimizationProposal, reason: str, *, source: str
) -> tuple[JobState, OptimizationOffer | None, str]:
    """Make the proposal the job's spec, never approvable by policy, with its offer on record; or say why not."""
    spent = spend_store().money(job.thread).committed_usd
    offer = OptimizationOffer.of(proposal, reason)
    over = spent + proposal.estimate.estimated_cost_usd > job.policy.max_budget_usd
    if over or not proposal.estimate.fits or not proposal.changes:
        why = f"its cheapest spec still cannot pass the gate ({proposal.summary})"
        return job, None, f"the optimizer tried every GPU and lever; {why}\n\n{offer.table()}"
    manual = job.policy.model_copy(update={"allow_auto_approve": False})  # the person must take the change
    job = job.model_copy(update={"policy": spend_store().tighten(job.run_id, manual).policy})
    job = estimate_job(set_spec(job, proposal.spec, source=source))
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
