"""The agent's only means of action: thin LangChain tools over the job engine.

Each tool reads the job from graph state (injected through ``ToolRuntime``, never shown to the
model), calls one engine step, and writes the new job back with a ``Command``. Arguments the
model passes cannot carry an approval, a budget or a retry count. Every refusal is recorded
as an event and returned as a plain tool message the model can explain.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from langchain.tools import ToolRuntime, tool
from langchain_core.messages import ToolMessage
from langgraph.errors import GraphBubbleUp
from langgraph.types import Command, interrupt

from agent.approval import ApprovalAnswer, ApprovalRequest
from tools.core.errors import AegisError, GuardRefusal
from tools.core.spec import parse_spec
from tools.core.stop import stop_requested
from tools.job.attempt import default_timeout_s, render_preview, run_job
from tools.job.steps import (
    JobState,
    already_asked,
    attempt_price,
    decide,
    estimate_job,
    evaluate_job,
    gate_job,
    open_request,
    preflight_refusal,
    ran_on,
    remediate_job,
    set_spec,
)
from tools.plan.worst_case import plan_worst_case
from tools.policy.gate import attempt_limits
from tools.policy.store import SpendStore
from tools.run.modal import modal_status

TOOL_NAMES = (
    "estimate_cost",
    "request_approval",
    "render_script",
    "run_local",
    "run_on_modal",
    "run_evals",
    "remediate",
)


def load_job(state: dict[str, Any]) -> JobState:
    raw = state.get("job")
    if not raw:
        raise AegisError("there is no training job yet: describe what to fine-tune first")
    return JobState.model_validate(raw)


def _reply(runtime: ToolRuntime, job: JobState | None, payload: dict[str, Any]) -> Command:
    update: dict[str, Any] = {
        "messages": [ToolMessage(json.dumps(payload, default=str), tool_call_id=runtime.tool_call_id)]
    }
    if job is not None:
        update["job"] = job.model_dump(mode="json")
    return Command(update=update)


def guarded(fn: Callable[..., tuple[JobState, dict[str, Any]]]) -> Callable[..., Command]:
    """Record the call, turn any AegisError into a refused tool message (and an event); never a traceback.

    A tool that paused for a person re-runs from its start on resume; its call is recorded once.
    """

    @functools.wraps(fn)
    def wrapper(runtime: ToolRuntime, **kwargs: Any) -> Command:
        name = fn.__name__.lstrip("_")
        try:
            job = load_job(runtime.state)
        except AegisError as exc:
            return _reply(runtime, None, {"ok": False, "status": "refused", "tool": name, "message": str(exc)})
        call_id = runtime.tool_call_id
        if not any(e.phase == "tool" and e.data.get("call_id") == call_id for e in job.folder.events()):
            job.record("tool", "started", f"{name} called", tool=name, args=kwargs, call_id=call_id)
        try:
            if stop_requested(job.thread):
                raise GuardRefusal("a stop was requested; nothing more is started in this thread")
            job, payload = fn(job, runtime, **kwargs)
        except GraphBubbleUp:
            raise
        except AegisError as exc:
            job.record(name, "failed", f"refused: {exc}", tool=name, refused=True)
            payload = {"ok": False, "status": "refused", "message": str(exc)}
        except Exception as exc:  # an engine bug must not kill the conversation; the event keeps the detail
            job.record(name, "failed", f"error: {type(exc).__name__}: {exc}", tool=name)
            payload = {"ok": False, "status": "error", "message": f"{type(exc).__name__}: {exc}"}
        payload = {"tool": name, "run_id": job.run_id, "report_path": f"{job.run_dir}/REPORT.md", **payload}
        return _reply(runtime, job, payload)

    return wrapper


def _estimate_payload(job: JobState) -> dict[str, Any]:
    assert job.estimate is not None and job.spec is not None
    bd = job.estimate.cost_breakdown
    return {
        "estimated_cost_usd": round(job.estimate.estimated_cost_usd, 4),
        "estimated_duration_min": round(job.estimate.estimated_duration_min, 2),
        "estimated_vram_gb": round(job.estimate.estimated_vram_gb, 2),
        "gpu": bd.gpu,
        "num_gpus": bd.num_gpus,
        "fits": bd.fits,
        "gpu_memory_gb": bd.gpu_memory_gb,
        "total_steps": bd.total_steps,
        "dataset_rows": bd.dataset_rows,
        "dataset_tokens": bd.dataset_tokens,
        "trainable_params": bd.trainable_params,
        "total_params": bd.total_params,
        "soft_threshold_usd": job.policy.soft_threshold_usd,
        "max_budget_usd": job.policy.max_budget_usd,
        "spent_usd": round(SpendStore().money(job.thread).committed_usd, 4),
        "notes": bd.notes,
        "preflight": _preflight_payload(job),
        "spec": job.spec.model_dump(mode="json"),
    }


def _preflight_payload(job: JobState) -> dict[str, Any] | None:
    if job.preflight is None:
        return None
    return {
        "passed": job.preflight.passed,
        "checks": [c.model_dump(mode="json") for c in job.preflight.checks],
        "truncated_share": round(job.preflight.truncated_share, 3),
    }


@guarded
def _estimate_cost(job: JobState, runtime: ToolRuntime, target_gpu: str | None = None) -> tuple[JobState, dict]:
    if target_gpu and job.spec is not None and target_gpu.strip().lower() != job.spec.target_gpu:
        new_spec = parse_spec({**job.spec.model_dump(), "target_gpu": target_gpu})
        job = set_spec(job, new_spec, source="agent (target_gpu)")
    job = estimate_job(job)
    stopped = preflight_refusal(job)
    if stopped:
        return job, {
            "ok": False,
            "status": "preflight_failed",
            "message": f"{stopped}. Nothing will be asked for or spent until this is fixed.",
            **_estimate_payload(job),
        }
    return job, {"ok": True, "status": "estimated", **_estimate_payload(job)}


def _worst_case(job: JobState) -> dict[str, Any]:
    """Every attempt the healing rules allow, priced, and what one attempt can bill before it is stopped."""
    assert job.spec is not None and job.estimate is not None
    money = SpendStore().money(job.thread)
    worst = plan_worst_case(
        job.spec,
        job.estimate,
        job.policy,
        max_retries=job.max_retries,
        spent_usd=money.committed_usd,
        price_usd_per_s=attempt_price(job),
    )
    default, price = default_timeout_s(job), attempt_price(job)
    try:
        limits = attempt_limits(
            estimated_seconds=ran_on(job).cost_breakdown.estimated_seconds,
            price_usd_per_s=price,
            default_timeout_s=default,
            remaining_usd=job.policy.max_budget_usd - money.committed_usd,
        )
        timeout, most = limits.timeout_s, limits.hold_usd
    except ValueError:
        timeout, most = default, default * price
    return {
        "attempts": [a.model_dump(mode="json") for a in worst.attempts],
        "worst_case_usd": worst.worst_case_usd,
        "retries_budget_allows": worst.retries_budget_allows,
        "dtype": worst.dtype,
        "num_gpus": worst.num_gpus,
        "timeout_s": timeout,
        "max_attempt_cost_usd": most,
    }


def _approval_request(job: JobState) -> ApprovalRequest:
    assert job.spec is not None and job.estimate is not None and job.gate is not None and job.pending_request_id
    return ApprovalRequest(
        run_id=job.run_id,
        request_id=job.pending_request_id,
        spec_hash=job.spec.spec_hash(),
        spec=job.spec.model_dump(mode="json"),
        estimated_cost_usd=job.estimate.estimated_cost_usd,
        estimated_duration_min=job.estimate.estimated_duration_min,
        estimated_vram_gb=job.estimate.estimated_vram_gb,
        fits=job.estimate.fits,
        gpu=job.estimate.cost_breakdown.gpu,
        spent_usd=job.gate.spent_usd,
        soft_threshold_usd=job.policy.soft_threshold_usd,
        max_budget_usd=job.policy.max_budget_usd,
        reason=job.gate.reason,
        **_worst_case(job),
    )


@guarded
def _request_approval(job: JobState, runtime: ToolRuntime) -> tuple[JobState, dict]:
    if job.status == "approved" and job.approval is not None:
        return job, {
            "ok": True,
            "status": "approved",
            "decided_by": job.decided_by,
            "message": "already approved for this exact spec and estimate",
        }
    if job.estimate is None or job.spec is None or job.estimate_spec_hash != job.spec.spec_hash():
        raise AegisError("there is no cost estimate for the current spec; call estimate_cost first")
    key = runtime.tool_call_id or "request"
    if not already_asked(job, key):
        job = gate_job(job)
        assert job.gate is not None
        if job.status != "awaiting_approval":
            return job, {
                "ok": job.status == "approved",
                "status": job.status,
                "decided_by": job.decided_by,
                "message": job.gate.reason,
            }
    # Resumed, this finds the question already on record with what was shown: nothing above the pause is
    # decided or priced twice, and the answer goes to that same request.
    job, shown = open_request(job, key, lambda asked: _approval_request(asked).model_dump_json())
    payload = json.loads(shown)
    answer = ApprovalAnswer.model_validate(interrupt(payload))
    if answer.request_id != job.pending_request_id:
        raise GuardRefusal("that answer was for another approval request; nothing was approved")
    job = decide(job, answer.decision, answer.decided_by, answer_id=answer.answer_id)
    if job.status == "planning":
        return job, {
            "ok": True,
            "status": "optimized",
            "decided_by": answer.decided_by,
            "message": "the person asked to optimize: a cheaper spec is proposed and must go through "
            "request_approval again",
            **_estimate_payload(job),
        }
    message = f"{answer.decision} by {answer.decided_by}"
    if job.status == "refused" and job.gate is not None:
        message = f"refused: {job.gate.reason}"
    return job, {
        "ok": job.status == "approved",
        "status": job.status,
        "decided_by": answer.decided_by,
        "message": message,
    }


@guarded
def _render_script(job: JobState, runtime: ToolRuntime) -> tuple[JobState, dict]:
    job = render_preview(job)
    assert job.rendered is not None
    return job, {
        "ok": True,
        "status": "rendered",
        "script_path": job.rendered.script_path,
        "config_path": job.rendered.config_path,
    }


def _run(job: JobState, runtime: ToolRuntime, executor: str) -> tuple[JobState, dict]:
    def progress(line: dict[str, Any]) -> None:
        runtime.stream_writer({"kind": "progress", "run_id": job.run_id, **line})

    thread = job.thread
    job = run_job(
        job.model_copy(update={"executor": executor}),
        on_progress=progress,
        should_stop=lambda: stop_requested(thread),
    )
    last = job.attempts[-1]
    payload = {
        "ok": last.status == "succeeded",
        "status": last.status,
        "failure_class": last.failure_class,
        "error": last.error_message,
        "attempt": len(job.attempts),
        "retry_count": job.retry_count,
        "max_retries": job.max_retries,
        "initial_train_loss": last.initial_train_loss,
        "final_train_loss": last.final_train_loss,
        "initial_eval_loss": last.initial_eval_loss,
        "final_eval_loss": last.final_eval_loss,
        "steps": last.steps_completed,
        "duration_s": round(last.duration_s, 1),
        "tokens_per_s": round(last.tokens_per_s, 1),
        "peak_memory_mb": round(last.peak_memory_mb, 1),
        "actual_cost_usd": round(last.actual_cost_usd, 4),
        "spent_usd": round(SpendStore().money(job.thread).committed_usd, 4),
    }
    return job, payload


@guarded
def _run_local(job: JobState, runtime: ToolRuntime) -> tuple[JobState, dict]:
    return _run(job, runtime, "local")


@guarded
def _run_on_modal(job: JobState, runtime: ToolRuntime) -> tuple[JobState, dict]:
    ok, hint = modal_status()
    if not ok:
        raise AegisError(f"Modal is not available: {hint}. Offer run_local instead.")
    return _run(job, runtime, "modal")


@guarded
def _run_evals(job: JobState, runtime: ToolRuntime) -> tuple[JobState, dict]:
    job = evaluate_job(job)
    assert job.eval_result is not None
    checks = [
        {"name": c.name, "passed": c.passed, "value": c.value, "threshold": c.threshold, "detail": c.detail}
        for c in job.eval_result.checks
    ]
    return job, {
        "ok": job.eval_result.passed,
        "status": "passed" if job.eval_result.passed else "failed",
        "checks": checks,
        "metrics": job.eval_result.metrics,
    }


@guarded
def _remediate(job: JobState, runtime: ToolRuntime) -> tuple[JobState, dict]:
    job = remediate_job(job)
    last = job.remediations[-1]
    return job, {
        "ok": True,
        "status": "remediated",
        "retry_count": job.retry_count,
        "max_retries": job.max_retries,
        "rule": last["rule"],
        "changes": last["changes"],
        "explanation": last["explanation"],
        "message": "the healed spec needs request_approval before it can run",
        **_estimate_payload(job),
    }


@tool
def estimate_cost(runtime: ToolRuntime, target_gpu: str | None = None) -> Command:
    """Estimate cost, time and GPU memory of the current training spec from the real dataset and model config.

    Pass target_gpu to estimate on another GPU (this changes the spec, so any approval no longer applies).
    """
    return _estimate_cost(runtime, target_gpu=target_gpu)


@tool
def request_approval(runtime: ToolRuntime) -> Command:
    """Ask the FinOps gate to approve the current spec and estimate.

    The gate auto-approves small runs, refuses runs over the hard limit, and otherwise pauses for a
    person to answer approve, optimize or cancel. Nothing you write can approve a run.
    """
    return _request_approval(runtime)


@tool
def render_script(runtime: ToolRuntime) -> Command:
    """Render the training script and its JSON config for the current spec (free; no approval needed)."""
    return _render_script(runtime)


@tool
def run_local(runtime: ToolRuntime) -> Command:
    """Train on this machine in a sandboxed subprocess. Refused without an approval for the current spec."""
    return _run_local(runtime)


@tool
def run_on_modal(runtime: ToolRuntime) -> Command:
    """Train on Modal GPUs (the spec's target_gpu and num_gpus). Refused without an approval for the current spec."""
    return _run_on_modal(runtime)


@tool
def run_evals(runtime: ToolRuntime) -> Command:
    """Evaluate the trained model: held-out loss before and after, overfitting gap, leak and degenerate-output probes."""
    return _run_evals(runtime)


@tool
def remediate(runtime: ToolRuntime) -> Command:
    """Heal the last failed attempt by the fixed rules (least invasive first). Refused past max_retries."""
    return _remediate(runtime)


TOOLS = [estimate_cost, request_approval, render_script, run_local, run_on_modal, run_evals, remediate]
