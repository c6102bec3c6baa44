"""Gate steps: the policy's grant, a question put to a person, and their answer, each through the spend store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tools.core.errors import GuardRefusal
from tools.core.money import usd
from tools.core.status import Decision, EventStatus, GateVerdict, JobStatus
from tools.evals.plan_line import eval_plan_line
from tools.evals.thresholds import EvalThresholds
from tools.job.offers import offer_for, optimize_on_request
from tools.job.planning import preflight_refusal
from tools.job.state import JobState, binding, min_hold, require_estimate, require_quote, require_spec
from tools.policy.gate import ApprovalRecord
from tools.policy.records import Grant
from tools.policy.store import spend_store
from tools.report.approval import ApprovalRequest


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
    store = spend_store()
    hold = min_hold(job) if est.placement is not None and est.placement.backend is not None else 0.0  # else refused
    if stopped:
        refusal = {"outcome": GateVerdict.REFUSED, "reason": stopped}
        outcome, grant = store.gate(job.run_id, est, hold).model_copy(update=refusal), None
    else:
        outcome, grant = store.grant_by_policy(job.run_id, binding(job), est, hold, model=require_spec(job).model_name)
    update: dict[str, Any] = {"gate": outcome, "approval": None, "pending_request_id": None}
    if grant is not None:
        update |= {
            "approval": _approval(grant),
            "status": JobStatus.APPROVED,
            "decision": Decision.APPROVE,
            "decided_by": grant.decided_by,
        }
    elif outcome.outcome == GateVerdict.REFUSED:
        update |= {"status": JobStatus.REFUSED}
    else:
        update |= {"status": JobStatus.AWAITING_APPROVAL}
    job = job.model_copy(update=update)
    status = EventStatus.FAILED if outcome.outcome == GateVerdict.REFUSED else EventStatus.COMPLETED
    job.record(
        "gate",
        status,
        f"{outcome.outcome}: {outcome.reason}",
        gate=outcome.model_dump(mode="json"),
        grant_id=grant.grant_id if grant else None,
    )
    return job


def approval_request(job: JobState, field_sources: dict[str, str] | None = None) -> ApprovalRequest:
    """What a person is shown at the gate: the job's quote, the gate's figures, and the limits it is held to.

    field_sources: which spec fields the person set, which are defaults and which Aegis changed (the chat's intake).
    """
    spec, quote = require_spec(job), require_quote(job)
    if job.gate is None or job.pending_request_id is None:
        raise GuardRefusal(f"there is nothing to ask a person (status: {job.status})")
    est, worst, cap = quote.estimate, quote.worst_case, quote.cap
    place = est.placement
    if place is None or place.backend is None or worst is None or cap is None:
        raise GuardRefusal(place.hint if place and place.hint else "nothing here can run this spec")
    bd = est.cost_breakdown
    return ApprovalRequest(
        run_id=job.run_id,
        request_id=job.pending_request_id,
        spec_hash=quote.spec_hash,
        quote_hash=quote.quote_hash,
        estimate_hash=quote.estimate_hash,
        data_digest=quote.data_digest,
        spec=spec,
        estimated_cost_usd=est.estimated_cost_usd,
        estimated_duration_min=est.estimated_duration_min,
        time_source=bd.time_source,
        estimated_vram_gb=est.estimated_vram_gb,
        fits=est.fits,
        gpu=bd.gpu,
        backend=place.backend,
        isolation=place.isolation.describe() if place.isolation else "isolation: unknown",
        remote_code=place.remote_code,
        spent_usd=job.gate.spent_usd,
        soft_threshold_usd=job.gate.soft_threshold_usd,
        max_budget_usd=job.gate.max_budget_usd,
        limits=[f"{s.describe()}; {usd(s.left_usd)} left" for s in job.gate.scopes],
        reason=job.gate.reason,
        optimization=offer_for(job),
        field_sources=field_sources or {},
        attempts=worst.attempts,
        worst_case_usd=worst.worst_case_usd,
        retries_budget_allows=worst.retries_budget_allows,
        dtype=worst.dtype,
        num_gpus=worst.num_gpus,
        timeout_s=cap.timeout_s,
        max_attempt_cost_usd=cap.max_attempt_cost_usd,
        eval_plan=eval_plan_line(spec, EvalThresholds.from_config()),
    )


def open_request(
    job: JobState, key: str, field_sources: dict[str, str] | None = None
) -> tuple[JobState, ApprovalRequest]:
    """Put the question to a person on record, exactly as shown; returns the job and the request shown.

    The same key (a tool call re-run when its pause is resumed) finds the same request and the payload first
    shown, without asking the gate again.
    """
    store = spend_store()
    found = store.request_shown(job.run_id, key)
    if found is not None:
        request_id, payload = found
        gate = store.gate(job.run_id, require_estimate(job), min_hold(job))
        update = {"status": JobStatus.AWAITING_APPROVAL, "pending_request_id": request_id, "gate": gate}
        return job.model_copy(update=update), ApprovalRequest.model_validate_json(payload)
    if job.status != JobStatus.AWAITING_APPROVAL:
        raise GuardRefusal(f"there is nothing to ask a person (status: {job.status})")
    asked = job.model_copy(update={"pending_request_id": f"req-{job.run_id}-{key}"})
    request = approval_request(asked, field_sources)
    store.open_request(
        job.run_id, binding(job), require_estimate(job).estimated_cost_usd, key, request.model_dump_json()
    )
    return asked, request


def pending_request(job: JobState) -> ApprovalRequest:
    """The question the job waits on, read back from the record: exactly what the person is shown."""
    payload = spend_store().payload(job.pending_request_id) if job.pending_request_id else None
    if payload is None:
        raise GuardRefusal(f"there is no pending approval to answer (status: {job.status})")
    return ApprovalRequest.model_validate_json(payload)


def already_asked(job: JobState, key: str) -> bool:
    return spend_store().request_shown(job.run_id, key) is not None


def decide(job: JobState, decision: Decision, decided_by: str, *, answer_id: str) -> JobState:
    """Apply a person's answer to the pending request, once. Approving never overrides a refusal.

    Optimize leaves the job in "planning" with the proposed spec estimated: it goes back through the gate.
    """
    est = require_estimate(job)
    if job.pending_request_id is None or job.status != JobStatus.AWAITING_APPROVAL:
        raise GuardRefusal(f"there is no pending approval to answer (status: {job.status})")
    answered = spend_store().answer(
        job.pending_request_id,
        answer_id=answer_id,
        decision=decision,
        decided_by=decided_by,
        estimate=est,
        min_hold_usd=min_hold(job),
        model=require_spec(job).model_name,
    )
    decision = Decision(decision)
    job = job.model_copy(update={"pending_request_id": None, "decision": decision, "decided_by": decided_by})
    if decision == Decision.CANCEL:
        job = job.model_copy(update={"status": JobStatus.CANCELLED})
        job.record(
            "approval",
            "completed",
            f"cancelled by {decided_by}; nothing will run",
            decision=decision,
            decided_by=decided_by,
        )
        return job
    if decision == Decision.OPTIMIZE:
        job.record(
            "approval", "completed", f"optimize requested by {decided_by}", decision=decision, decided_by=decided_by
        )
        job, offer, why_not = optimize_on_request(job.model_copy(update={"status": JobStatus.PLANNING}), decided_by)
        if offer is None:
            job.record("optimize", "failed", f"{why_not.splitlines()[0]}; the spec as asked goes back to the gate")
        return job
    if answered.grant is None:
        reason = answered.gate.reason if answered.gate else "the gate refused"
        job = job.model_copy(update={"status": JobStatus.REFUSED, "gate": answered.gate or job.gate, "approval": None})
        job.record("approval", "failed", f"approval by {decided_by} refused: a person cannot lift the gate ({reason})")
        return job
    approval = _approval(answered.grant)
    job = job.model_copy(update={"approval": approval, "status": JobStatus.APPROVED})
    job.record(
        "approval",
        "completed",
        f"approved by {decided_by} for {usd(est.estimated_cost_usd)}",
        decision=decision,
        decided_by=decided_by,
        approval=approval.model_dump(mode="json"),
    )
    return job
