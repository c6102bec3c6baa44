"""The agent's only means of action: thin LangChain tools over the job engine.

Each tool is one function ``(job, runtime, **args) -> (job, result)`` whose docstring is the description
the model reads; ``@guarded`` makes it a LangChain tool. The job comes from graph state (injected through
``ToolRuntime``, never shown to the model); the function calls engine steps and returns the new job and a
typed result (``agent.results``), which goes back as the ToolMessage with the job in a ``Command``.
Arguments the model passes cannot carry an approval, a budget or a retry count. Every refusal is recorded
as an event and returned as a refused result the model can explain.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from langchain.tools import ToolRuntime, tool
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langgraph.errors import GraphBubbleUp
from langgraph.types import Command, interrupt

from agent.intake import field_sources
from agent.read_only_tools import READ_ONLY_REFUSAL, READ_ONLY_TOOLS, is_read_only_turn
from agent.results import (
    ApprovalResult,
    AttemptFacts,
    EstimateFacts,
    EstimateResult,
    EvalFacts,
    EvalsResult,
    RemediateResult,
    RemediationFacts,
    RenderResult,
    ResultStatus,
    RunResult,
    ToolName,
    ToolResult,
    failure,
    not_runnable_message,
)
from tools.core.errors import AegisError, GuardRefusal
from tools.core.spec import parse_spec
from tools.core.status import AttemptStatus, JobStatus
from tools.core.stop import stop_requested
from tools.job.approval import already_asked, decide, gate_job, open_request
from tools.job.attempt import render_preview, run_job
from tools.job.healing import evaluate_job, remediate_job
from tools.job.offers import offer_for, offer_optimization
from tools.job.planning import estimate_job, preflight_refusal, set_spec
from tools.job.probing import finish_probe, probe_share, start_probe
from tools.job.state import JobState, job_backend, require_estimate
from tools.policy.store import spend_store
from tools.report.approval import ApprovalAnswer
from tools.run.backend import LOCAL

ToolBody = Callable[..., tuple[JobState, ToolResult]]


def load_job(state: dict[str, Any]) -> JobState:
    raw = state.get("job")
    if not raw:
        raise AegisError("there is no training job yet: describe what to fine-tune first")
    return JobState.model_validate(raw)


def _reply(runtime: ToolRuntime, job: JobState | None, result: ToolResult) -> Command:
    message = ToolMessage(result.model_dump_json(), tool_call_id=runtime.tool_call_id, name=result.tool)
    update: dict[str, Any] = {"messages": [message]}
    if job is not None:
        update["job"] = job.model_dump(mode="json")
    return Command(update=update)


def _call(name: ToolName, fn: ToolBody, runtime: ToolRuntime, kwargs: dict[str, Any]) -> Command:
    if is_read_only_turn(runtime.state.get("messages", [])):  # refused before the job is read or written
        return _reply(runtime, None, failure(name, ResultStatus.REFUSED, READ_ONLY_REFUSAL))
    try:
        job = load_job(runtime.state)
    except AegisError as exc:
        return _reply(runtime, None, failure(name, ResultStatus.REFUSED, str(exc)))
    call_id = runtime.tool_call_id
    if not any(e.phase == "tool" and e.data.get("call_id") == call_id for e in job.folder.events()):
        job.record("tool", "started", f"{name} called", tool=name, args=kwargs, call_id=call_id)
    try:
        if stop_requested(job.thread):
            raise GuardRefusal("a stop was requested; nothing more is started in this thread")
        job, result = fn(job, runtime, **kwargs)
    except GraphBubbleUp:
        raise
    except AegisError as exc:
        job.record(name, "failed", f"refused: {exc}", tool=name, refused=True)
        result = failure(name, ResultStatus.REFUSED, str(exc))
    except Exception as exc:  # an engine bug must not kill the conversation; the event keeps the detail
        job.record(name, "failed", f"error: {type(exc).__name__}: {exc}", tool=name)
        result = failure(name, ResultStatus.ERROR, f"{type(exc).__name__}: {exc}")
    result = result.model_copy(update={"run_id": job.run_id, "report_path": f"{job.run_dir}/REPORT.md"})
    return _reply(runtime, job, result)


def guarded(fn: ToolBody) -> BaseTool:
    """The LangChain tool of ``fn(job, runtime, **args)``: its name, docstring and ``args`` are what the model sees.

    The wrapper records the call, refuses after a stop, and turns any AegisError into a refused result (and
    an event), anything else into an error result: never a traceback. A tool that paused for a person
    re-runs from its start on resume; its call is recorded once.
    """
    name = ToolName(fn.__name__)
    hints = typing.get_type_hints(fn)
    params = [p.replace(annotation=hints[p.name]) for p in inspect.signature(fn).parameters.values() if p.name != "job"]

    def call(runtime: ToolRuntime, **kwargs: Any) -> Command:
        return _call(name, fn, runtime, kwargs)

    call.__name__ = call.__qualname__ = fn.__name__
    call.__doc__, call.__module__ = fn.__doc__, fn.__module__
    call.__signature__ = inspect.Signature(params, return_annotation=Command)  # type: ignore[attr-defined]
    call.__annotations__ = {p.name: p.annotation for p in params} | {"return": Command}
    return tool(call)


def _spent(job: JobState) -> float:
    return spend_store().money(job.thread).committed_usd


def _estimate(job: JobState) -> EstimateFacts:
    return EstimateFacts.of(job, _spent(job))


@guarded
def estimate_cost(
    job: JobState, runtime: ToolRuntime, target_gpu: str | None = None, probe_steps: int | None = None
) -> tuple[JobState, ToolResult]:
    """Estimate cost, time and GPU memory of the current training spec from the real dataset and model config.

    Pass target_gpu to estimate on another GPU (this changes the spec, so any approval no longer applies).
    Pass probe_steps (2-1000) only when the person asks to measure first: the spec becomes a probe attempt of
    that many steps, approved (request_approval), run and billed on its own; its measured time then re-prices
    the full run, which needs request_approval again.
    """
    if job.probe_of is not None and (target_gpu or probe_steps):  # a new question: back to the full spec
        job = set_spec(job.model_copy(update={"probe_of": None}), job.probe_of, source="agent (probe withdrawn)")
    if target_gpu and job.spec is not None and target_gpu.strip().lower() != job.spec.target_gpu:
        new_spec = parse_spec({**job.spec.model_dump(), "target_gpu": target_gpu})
        job = set_spec(job, new_spec, source="agent (target_gpu)")
    job = estimate_job(job)
    placement = require_estimate(job).placement
    if placement is None or placement.backend is None:
        facts = _estimate(job)
        return job, EstimateResult(
            ok=False, status=ResultStatus.NOT_RUNNABLE, message=not_runnable_message(facts), estimate=facts
        )
    message = ""
    if probe_steps is not None and preflight_refusal(job) is None:
        full_cost = require_estimate(job).estimated_cost_usd
        if full_cost > 0:
            job = start_probe(job, probe_steps)
            message = f"{probe_share(job, full_cost)}; request_approval for the probe, then run it"
        else:
            message = "no probe attempt: this run costs nothing, so nothing is gained by paying to measure it first"
    stopped = preflight_refusal(job)
    if stopped:
        message = f"{stopped}. Nothing will be asked for or spent until this is fixed."
        return job, EstimateResult(
            ok=False, status=ResultStatus.PREFLIGHT_FAILED, message=message, estimate=_estimate(job)
        )
    return job, EstimateResult(ok=True, status=ResultStatus.ESTIMATED, estimate=_estimate(job), message=message)


def _decided(job: JobState, decided_by: str | None, message: str) -> ApprovalResult:
    status = ResultStatus(job.status)  # approved, refused or cancelled
    return ApprovalResult(ok=status == ResultStatus.APPROVED, status=status, decided_by=decided_by, message=message)


def _refused(job: JobState) -> tuple[JobState, ToolResult]:
    """A refusal; where the job does not fit or is over the hard limit, with the optimizer's offer instead."""
    assert job.gate is not None
    reason = job.gate.reason
    job, offer, why_not = offer_optimization(job)
    if offer is None:
        return job, _decided(job, job.decided_by, f"{reason}; {why_not}" if why_not else reason)
    message = f"{offer.text()}\n\nThe proposed spec must go through request_approval again; a person decides."
    return job, ApprovalResult(
        ok=True, status=ResultStatus.OPTIMIZED, message=message, estimate=_estimate(job), offer=offer
    )


@guarded
def request_approval(job: JobState, runtime: ToolRuntime) -> tuple[JobState, ToolResult]:
    """Ask the FinOps gate to approve the current spec and estimate.

    The gate auto-approves small runs, refuses runs over the hard limit, and otherwise pauses for a
    person to answer approve, optimize or cancel. Nothing you write can approve a run.
    """
    if runtime.state.get("estimate_only"):  # the person asked only for the price; "go ahead" lifts it
        raise GuardRefusal(
            'the person asked only for an estimate: nothing is put up for approval until they say "go ahead"'
        )
    if job.status == JobStatus.APPROVED and job.approval is not None:
        return job, _decided(job, job.decided_by, "already approved for this exact spec and estimate")
    if job.quote is None or job.spec is None or job.quote.spec_hash != job.spec.spec_hash():
        raise AegisError("there is no cost estimate for the current spec; call estimate_cost first")
    key = runtime.tool_call_id or "request"
    if not already_asked(job, key):
        job = gate_job(job)
        assert job.gate is not None
        if job.status == JobStatus.REFUSED:
            return _refused(job)
        if job.status != JobStatus.AWAITING_APPROVAL:
            return job, _decided(job, job.decided_by, job.gate.reason)
    # Resumed, this finds the question already on record with what was shown: nothing above the pause is
    # decided or priced twice, and the answer goes to that same request.
    draft = runtime.state.get("spec_draft") or {}
    # Who set each field: the person or a default; a run built on another's spec has its parent's instead (no line).
    sources = field_sources(job.spec, draft) if draft and job.warm_start is None else None
    job, shown = open_request(job, key, sources)
    answer = ApprovalAnswer.model_validate(interrupt(shown.model_dump(mode="json")))
    if answer.request_id != job.pending_request_id:
        raise GuardRefusal("that answer was for another approval request; nothing was approved")
    job = decide(job, answer.decision, answer.decided_by, answer_id=answer.answer_id)
    if job.status == JobStatus.PLANNING:
        offer = offer_for(job)
        message = (
            "the person asked to optimize: a cheaper spec is proposed and must go through request_approval again"
            if offer is not None
            else "the person asked to optimize, but the optimizer found nothing better that fits; the spec as asked "
            "must go through request_approval again"
        )
        return job, ApprovalResult(
            ok=True,
            status=ResultStatus.OPTIMIZED,
            decided_by=answer.decided_by,
            message=message,
            estimate=_estimate(job),
            offer=offer,
        )
    message = f"{answer.decision} by {answer.decided_by}"
    if job.status == JobStatus.REFUSED and job.gate is not None:
        message = f"refused: {job.gate.reason}"
    return job, _decided(job, answer.decided_by, message)


@guarded
def render_script(job: JobState, runtime: ToolRuntime) -> tuple[JobState, ToolResult]:
    """Render the training script and its JSON config for the current spec (free; no approval needed)."""
    job = render_preview(job)
    assert job.rendered is not None
    return job, RenderResult(
        ok=True,
        status=ResultStatus.RENDERED,
        script_path=job.rendered.script_path,
        config_path=job.rendered.config_path,
    )


def _run(job: JobState, runtime: ToolRuntime, tool: ToolName) -> tuple[JobState, ToolResult]:
    def progress(line: dict[str, Any]) -> None:
        runtime.stream_writer({"kind": "progress", "run_id": job.run_id, **line})

    thread = job.thread
    backend = job_backend(job)  # the one the estimate and the approval name; the tool only has to agree
    if (tool == ToolName.RUN_LOCAL) != (backend.name == LOCAL):
        right = ToolName.RUN_LOCAL if backend.name == LOCAL else ToolName.RUN_ON_MODAL
        gpu = require_estimate(job).cost_breakdown.gpu
        raise GuardRefusal(f"this spec was approved to run on {backend.name} ({gpu}), not here: call {right}")
    job = run_job(job, on_progress=progress, should_stop=lambda: stop_requested(thread))
    attempt = AttemptFacts.of(job, _spent(job))
    ok = attempt.status == AttemptStatus.SUCCEEDED
    if job.probe_of is not None:
        job = finish_probe(job)
        if job.status == JobStatus.FAILED:
            message = "the probe attempt measured no steps, so the full run was not priced or started"
            return job, RunResult(tool=tool, ok=False, status=ResultStatus.FAILED, attempt=attempt, message=message)
        message = "the probe attempt re-priced the full run with its measured time: call request_approval for it"
        return job, RunResult(
            tool=tool,
            ok=True,
            status=ResultStatus.PROBED,
            attempt=attempt,
            message=message,
            estimate=_estimate(job),
        )
    return job, RunResult(tool=tool, ok=ok, status=ResultStatus(attempt.status), attempt=attempt)


@guarded
def run_local(job: JobState, runtime: ToolRuntime) -> tuple[JobState, ToolResult]:
    """Train on this machine in a sandboxed subprocess. Refused without an approval for the current spec."""
    return _run(job, runtime, ToolName.RUN_LOCAL)


@guarded
def run_on_modal(job: JobState, runtime: ToolRuntime) -> tuple[JobState, ToolResult]:
    """Train on Modal GPUs (the spec's target_gpu and num_gpus). Refused without an approval for the current spec."""
    return _run(job, runtime, ToolName.RUN_ON_MODAL)


@guarded
def run_evals(job: JobState, runtime: ToolRuntime) -> tuple[JobState, ToolResult]:
    """Evaluate the trained model: held-out loss before and after, overfitting gap, leak and degenerate-output probes."""
    thread = job.thread

    def progress(line: dict[str, Any]) -> None:
        runtime.stream_writer({"kind": "progress", "run_id": job.run_id, **line})

    job = evaluate_job(job, on_progress=progress, should_stop=lambda: stop_requested(thread))
    result = job.eval_result
    assert result is not None
    return job, EvalsResult(
        ok=result.passed,
        status=ResultStatus.PASSED if result.passed else ResultStatus.FAILED,
        evals=EvalFacts(checks=result.checks, metrics=result.metrics),
    )


@guarded
def remediate(job: JobState, runtime: ToolRuntime) -> tuple[JobState, ToolResult]:
    """Heal the last failed attempt by the fixed rules (least invasive first). Refused past max_retries."""
    job = remediate_job(job)
    last = job.remediations[-1]
    healed = RemediationFacts(
        retry_count=job.retry_count,
        max_retries=job.max_retries,
        rule=last.rule,
        changes=last.changes,
        explanation=last.explanation,
    )
    return job, RemediateResult(
        ok=True,
        status=ResultStatus.REMEDIATED,
        message="the healed spec needs request_approval before it can run",
        remediation=healed,
        estimate=_estimate(job),
    )


TOOLS = [estimate_cost, request_approval, render_script, run_local, run_on_modal, run_evals, remediate]
# What the agent is given: the guarded money tools, and beside them the read-only ones (no job, never an approval).
AGENT_TOOLS: list[BaseTool] = [*TOOLS, *READ_ONLY_TOOLS]
