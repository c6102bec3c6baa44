"""Gate steps: the policy's grant, a question put to a person, and their answer, each through the spend store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tools.core.errors import GuardRefusal
from tools.core.status import Decision, EventStatus, GateVerdict, JobStatus
from tools.job.planning import estimate_job, preflight_refusal, set_spec
from tools.job.state import JobState, binding, min_hold, require_estimate, require_spec
from tools.plan.optimizer import optimize_spec
from tools.policy.gate import ApprovalRecord
from tools.policy.records import Grant
from tools.policy.store import SpendStore


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
    store = SpendStore()
    hold = min_hold(job) if est.placement is not None and est.placement.backend is not None else 0.0  # else refused
    if stopped:
        refusal = {"outcome": GateVerdict.REFUSED, "reason": stopped}
        outcome, grant = store.gate(job.run_id, est, hold).model_copy(update=refusal), None
    else:
        outcome, grant = store.grant_by_policy(job.run_id, binding(job), est, hold)
    update: dict[str, Any] = {"gate": outcome, "approval": None, "pending_request_id": None}
    if grant is not None:
        update |= {
            "approval": _approval(grant),
            "status": JobStatus.APPROVED,
            "decision": Decision.APPROVE,
            "decided_by": grant.decided_by,
        }
    elif outcome.outcome == "refused":
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


def open_request(job: JobState, key: str, shown: Callable[[JobState], str] = lambda job: "{}") -> tuple[JobState, str]:
    """Put the question to a person on record; returns the job and what the person is shown.

    ``shown`` renders the question once its request id is known. The same key (a tool call re-run when
    its pause is resumed) finds the same request and the payload first shown, without asking the gate again.
    """
    store = SpendStore()
    found = store.request_shown(job.run_id, key)
    if found is not None:
        request_id, payload = found
        gate = store.gate(job.run_id, require_estimate(job), min_hold(job))
        update = {"status": JobStatus.AWAITING_APPROVAL, "pending_request_id": request_id, "gate": gate}
        return job.model_copy(update=update), payload
    if job.status != "awaiting_approval":
        raise GuardRefusal(f"there is nothing to ask a person (status: {job.status})")
    asked = job.model_copy(update={"pending_request_id": f"req-{job.run_id}-{key}"})
    payload = shown(asked)
    store.open_request(job.run_id, binding(job), require_estimate(job).estimated_cost_usd, key, payload)
    return asked, payload


def already_asked(job: JobState, key: str) -> bool:
    return SpendStore().request_shown(job.run_id, key) is not None


def decide(job: JobState, decision: Decision, decided_by: str, *, answer_id: str) -> JobState:
    """Apply a person's answer to the pending request, once. Approving never overrides a refusal.

    Optimize leaves the job in "planning" with the proposed spec estimated: it goes back through the gate.
    """
    spec, est = require_spec(job), require_estimate(job)
    if job.pending_request_id is None or job.status != "awaiting_approval":
        raise GuardRefusal(f"there is no pending approval to answer (status: {job.status})")
    answered = SpendStore().answer(
        job.pending_request_id,
        answer_id=answer_id,
        decision=decision,
        decided_by=decided_by,
        estimate=est,
        min_hold_usd=min_hold(job),
    )
    decision = Decision(decision)
    job = job.model_copy(update={"pending_request_id": None, "decision": decision, "decided_by": decided_by})
    if decision == "cancel":
        job = job.model_copy(update={"status": JobStatus.CANCELLED})
        job.record(
            "approval",
            "completed",
            f"cancelled by {decided_by}; nothing will run",
            decision=decision,
            decided_by=decided_by,
        )
        return job
    if decision == "optimize":
        job.record(
            "approval", "completed", f"optimize requested by {decided_by}", decision=decision, decided_by=decided_by
        )
        spent = SpendStore().money(job.thread).committed_usd
        proposal = optimize_spec(
            spec, job.policy, spent_usd=spent, dataset_stats=job.prepared.data.stats if job.prepared else None
        )
        job.record("optimize", "completed", proposal.summary, changes=proposal.changes)
        return estimate_job(set_spec(job, proposal.spec, source="optimizer"))
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
        f"approved by {decided_by} for ${est.estimated_cost_usd:.4f}",
        decision=decision,
        decided_by=decided_by,
        approval=approval.model_dump(mode="json"),
    )
    return job
