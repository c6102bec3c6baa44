"""The embedded planner: a LangChain chat model that needs no API key.

It parses requests with rules (structured output) and follows the standard plan by reading the
tools' typed results, through the very same graph and guarded tools a real LLM uses. It decides
nothing about money or retries: the tools do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.utils.function_calling import convert_to_openai_tool

from agent.intake import parse_request
from agent.read_only_tools import is_read_only, reply_text
from agent.results import (
    ApprovalResult,
    EstimateResult,
    EvalsResult,
    RemediateResult,
    RenderResult,
    ResultStatus,
    RunResult,
    ToolName,
    ToolResult,
    read_tool_result,
)
from tools.core.money import usd
from tools.plan.remediation import REMEDIATE_ON
from tools.run.backend import LOCAL

SPEC_PARSED = "aegis_spec_parsed"
ESTIMATE_ONLY = "aegis_estimate_only"  # on the intake's message: this turn prices the job and asks nothing
ESTIMATE_ONLY_LINE = (
    'Estimate only, as you asked: nothing was run and no approval was asked for. Say "go ahead" to have it run.'
)
MAX_TOOL_CALLS = 30


class OfflinePlanner(BaseChatModel):
    """Rule-based intent parsing plus the standard plan, as a chat model."""

    bound_tools: list[str] = []

    @property
    def _llm_type(self) -> str:
        return "aegis-offline-planner"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable:
        names = [convert_to_openai_tool(t)["function"]["name"] for t in tools]
        return self.model_copy(update={"bound_tools": names})

    def with_structured_output(self, schema: Any, *, include_raw: bool = False, **kwargs: Any) -> Runnable:
        def parse(value: Any) -> Any:
            request = parse_request(_last_human_text(value))
            parsed = schema.model_validate(request.model_dump()) if isinstance(schema, type) else request.model_dump()
            if include_raw:
                return {"raw": AIMessage(request.model_dump_json()), "parsed": parsed, "parsing_error": None}
            return parsed

        return RunnableLambda(parse, name="OfflinePlannerStructuredOutput")

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next_message(messages))])

    def _next_message(self, messages: list[BaseMessage]) -> AIMessage:
        start = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
        turn = messages[start + 1 :]
        spec_turn = any(m.additional_kwargs.get(SPEC_PARSED) for m in turn)
        looked_up = [r for r in _tool_results(turn) if is_read_only(r.tool)]
        if looked_up and not spec_turn:  # a read-only request: its answer is what the tool found
            return AIMessage(reply_text(looked_up))
        if not self.bound_tools or not spec_turn:
            return AIMessage(
                "Tell me what to fine-tune, for example: “LoRA fine-tune local:tiny-llama on data/sample.jsonl "
                "for 1 epoch with batch size 8”. I estimate the cost, ask for approval when money is involved, "
                "train, evaluate and write a report."
            )
        results = [r for r in _tool_results(turn) if not is_read_only(r.tool)]  # the plan is the money tools'
        if len(results) >= MAX_TOOL_CALLS:
            return AIMessage("I stopped after too many steps; see the report for what happened.")
        estimate_only = any(m.additional_kwargs.get(ESTIMATE_ONLY) for m in turn)
        name = self._next_tool(results, estimate_only=estimate_only)
        if name is None:
            return AIMessage(_summary(results, estimate_only=estimate_only))
        call_id = f"call_{len(results) + 1}_{name.value}"
        args: dict[str, Any] = {}
        if not results and (steps := parse_request(_last_human_text(messages)).probe_steps):
            args["probe_steps"] = steps  # the person asked to measure on the target first
        return AIMessage(
            content="", tool_calls=[{"name": name.value, "args": args, "id": call_id, "type": "tool_call"}]
        )

    def _next_tool(self, results: list[ToolResult], *, estimate_only: bool = False) -> ToolName | None:
        """The standard plan's next step; a turn that asked only for the price ends with its estimate."""
        run_tool = _run_tool(results)
        if not results:
            return ToolName.ESTIMATE_COST
        last = results[-1]
        if isinstance(last, EstimateResult):
            return ToolName.REQUEST_APPROVAL if last.ok and not estimate_only else None
        if isinstance(last, ApprovalResult):
            if last.status == ResultStatus.APPROVED:
                return run_tool
            return ToolName.REQUEST_APPROVAL if last.status == ResultStatus.OPTIMIZED else None
        if isinstance(last, RunResult):
            if last.status == ResultStatus.PROBED:
                return ToolName.REQUEST_APPROVAL  # the full run, re-priced by the probe
            if last.ok:
                return ToolName.RUN_EVALS
            failed = last.attempt is not None and last.status == ResultStatus.FAILED
            return ToolName.REMEDIATE if failed and last.attempt.failure_class in REMEDIATE_ON else None
        if isinstance(last, RemediateResult):
            return ToolName.REQUEST_APPROVAL if last.ok else None
        if isinstance(last, RenderResult):
            return run_tool
        return None


def _run_tool(results: list[ToolResult]) -> ToolName:
    """The run tool for the backend the latest estimate names (an optimized or healed spec may name another)."""
    latest = next((r.estimate for r in reversed(results) if getattr(r, "estimate", None) is not None), None)
    local = latest is None or latest.placement is None or latest.placement.backend == LOCAL
    return ToolName.RUN_LOCAL if local else ToolName.RUN_ON_MODAL


def _last_human_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, PromptValue):
        value = value.to_messages()
    for message in reversed(list(value)):
        if isinstance(message, HumanMessage):
            return str(message.content)
    return ""


def _tool_results(turn: list[BaseMessage]) -> list[ToolResult]:
    """The typed results of this turn's tool calls, in order."""
    names: dict[str, str] = {}
    results = []
    for message in turn:
        if isinstance(message, AIMessage):
            names.update({c["id"]: c["name"] for c in message.tool_calls})
        elif isinstance(message, ToolMessage):
            results.append(read_tool_result(message.content, names.get(message.tool_call_id)))
    return results


def _estimate_line(r: EstimateResult) -> str | None:
    if r.ok and r.estimate is not None:
        e = r.estimate
        return (
            f"Estimate: {usd(e.estimated_cost_usd)} on {e.gpu} ({e.estimated_duration_min:.1f} min, "
            f"{e.estimated_vram_gb:.1f} GB, {'fits' if e.fits else 'does NOT fit'}); limits: "
            f"soft {usd(e.soft_threshold_usd)}, hard {usd(e.max_budget_usd)}."
        )
    if r.status == ResultStatus.PREFLIGHT_FAILED:
        return f"Stopped before any money was asked for: {r.message}"
    if r.status == ResultStatus.NOT_RUNNABLE:
        return f"Not runnable here: {r.message}"
    return f"{r.tool} refused: {r.message}"


def _run_line(r: RunResult) -> str:
    a = r.attempt
    if r.status == ResultStatus.PROBED and a is not None and r.estimate is not None:
        return (
            f"Probe attempt {a.attempt}: {a.steps} steps in {a.duration_s:.0f} s, actual cost {usd(a.actual_cost_usd)}; "
            f"the full run re-priced at {usd(r.estimate.estimated_cost_usd)} ({r.estimate.estimated_duration_min:.1f} min, "
            f"{r.estimate.time_source})."
        )
    if r.ok and a is not None:
        return (
            f"Training attempt {a.attempt} succeeded: train loss {_loss(a.initial_train_loss)} → "
            f"{_loss(a.final_train_loss)}, {a.steps} steps in {a.duration_s:.0f} s "
            f"({a.tokens_per_s:.0f} tokens/s), actual cost {usd(a.actual_cost_usd)}."
        )
    if r.status == ResultStatus.REFUSED:
        return f"The run was refused: {r.message}"
    if a is None:
        return f"{r.tool} failed: {r.message}"
    return f"Training attempt {a.attempt} {r.status}: {a.failure_class} — {a.error or r.message}"


def _loss(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _line(r: ToolResult) -> str | None:
    """One line of the account for one result; None when there is nothing to say."""
    if isinstance(r, EstimateResult):
        return _estimate_line(r)
    if isinstance(r, ApprovalResult):
        who = f" by {r.decided_by}" if r.decided_by else ""
        if r.offer is not None:  # the table was shown with the approval; the account names the offer
            return f"Gate: refused as asked ({r.offer.refused_because}); the optimizer proposed {r.offer.summary}"
        return f"Gate: {r.status}{who} — {r.message}"
    if isinstance(r, RunResult):
        return _run_line(r)
    if isinstance(r, RemediateResult):
        if r.ok and r.remediation is not None:
            return f"Remediation {r.remediation.retry_count}/{r.remediation.max_retries}: {r.remediation.explanation}"
        return f"Remediation refused: {r.message}"
    if isinstance(r, EvalsResult):
        if r.evals is None:
            return f"Evaluation could not run: {r.message}"
        marks = {True: "pass", False: "FAIL"}
        checks = ", ".join(
            f"{c.name} {marks[c.passed] if c.passed or c.severity == 'gate' else 'warning'}" for c in r.evals.checks
        )
        return f"Evaluation {'passed' if r.ok else 'failed'}: {checks}."
    return None if r.ok else f"{r.tool} refused: {r.message}"


def _summary(results: list[ToolResult], *, estimate_only: bool = False) -> str:
    """A plain account built only from the numbers the tools returned."""
    lines = [line for line in map(_line, results) if line]
    if estimate_only:
        lines.append(ESTIMATE_ONLY_LINE)
    report = next((r.report_path for r in reversed(results) if r.report_path), None)
    if report:
        lines.append(f"Report: {report}")
    return "\n".join(f"- {line}" for line in lines) or "Nothing was done."
