"""The embedded planner: a LangChain chat model that needs no API key.

It parses requests with rules (structured output) and follows the standard plan by reading the
tools' JSON replies, through the very same graph and guarded tools a real LLM uses. It decides
nothing about money or retries: the tools do.
"""

from __future__ import annotations

import json
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
from tools.plan.remediation import REMEDIATE_ON

SPEC_PARSED = "aegis_spec_parsed"
MAX_TOOL_CALLS = 30


class OfflinePlanner(BaseChatModel):
    """Rule-based intent parsing plus the standard plan, as a chat model."""

    executor: str = "local"
    bound_tools: list[str] = []

    @property
    def _llm_type(self) -> str:
        return "aegis-offline-planner"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable:
        names = [convert_to_openai_tool(t)["function"]["name"] for t in tools]
        return self.model_copy(update={"bound_tools": names})

    def with_structured_output(self, schema: Any, **kwargs: Any) -> Runnable:
        def parse(value: Any) -> Any:
            request = parse_request(_last_human_text(value))
            return schema.model_validate(request.model_dump()) if isinstance(schema, type) else request.model_dump()

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
        if not self.bound_tools or not any(m.additional_kwargs.get(SPEC_PARSED) for m in turn):
            return AIMessage(
                "Tell me what to fine-tune, for example: “LoRA fine-tune local:tiny-llama on data/sample.jsonl "
                "for 1 epoch with batch size 8”. I estimate the cost, ask for approval when money is involved, "
                "train, evaluate and write a report."
            )
        results = _tool_results(turn)
        if len(results) >= MAX_TOOL_CALLS:
            return AIMessage("I stopped after too many steps; see the report for what happened.")
        name = self._next_tool(results)
        if name is None:
            return AIMessage(_summary(results))
        call_id = f"call_{len(results) + 1}_{name}"
        return AIMessage(content="", tool_calls=[{"name": name, "args": {}, "id": call_id, "type": "tool_call"}])

    def _next_tool(self, results: list[tuple[str, dict[str, Any]]]) -> str | None:
        run_tool = "run_on_modal" if self.executor == "modal" else "run_local"
        if not results:
            return "estimate_cost"
        name, last = results[-1]
        status = last.get("status")
        if name == "estimate_cost":
            return "request_approval" if last.get("ok") else None
        if name == "request_approval":
            if status == "approved":
                return run_tool
            return "request_approval" if status == "optimized" else None
        if name in ("run_local", "run_on_modal"):
            if last.get("ok"):
                return "run_evals"
            if status == "failed" and last.get("failure_class") in REMEDIATE_ON:
                return "remediate"
            return None
        if name == "remediate":
            return "request_approval" if last.get("ok") else None
        if name == "render_script":
            return run_tool
        return None


def _last_human_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, PromptValue):
        value = value.to_messages()
    for message in reversed(list(value)):
        if isinstance(message, HumanMessage):
            return str(message.content)
    return ""


def _tool_results(turn: list[BaseMessage]) -> list[tuple[str, dict[str, Any]]]:
    names: dict[str, str] = {}
    results = []
    for message in turn:
        if isinstance(message, AIMessage):
            names.update({c["id"]: c["name"] for c in message.tool_calls})
        elif isinstance(message, ToolMessage):
            try:
                payload = json.loads(str(message.content))
            except json.JSONDecodeError:
                payload = {"ok": False, "status": "error", "message": str(message.content)}
            results.append((names.get(message.tool_call_id, payload.get("tool", "?")), payload))
    return results


def _summary(results: list[tuple[str, dict[str, Any]]]) -> str:
    """A plain account built only from the numbers the tools returned."""
    lines: list[str] = []
    report = None
    for name, r in results:
        report = r.get("report_path", report)
        if name == "estimate_cost" and r.get("ok"):
            lines.append(
                f"Estimate: ${r['estimated_cost_usd']:.2f} on {r['gpu']} ({r['estimated_duration_min']:.1f} min, "
                f"{r['estimated_vram_gb']:.1f} GB, {'fits' if r['fits'] else 'does NOT fit'}); limits: "
                f"soft ${r['soft_threshold_usd']:.2f}, hard ${r['max_budget_usd']:.2f}."
            )
        elif name == "estimate_cost" and r.get("status") == "preflight_failed":
            lines.append(f"Stopped before any money was asked for: {r.get('message')}")
        elif name == "request_approval":
            who = f" by {r['decided_by']}" if r.get("decided_by") else ""
            lines.append(f"Gate: {r.get('status')}{who} — {r.get('message', '')}")
        elif name in ("run_local", "run_on_modal"):
            if r.get("ok"):
                lines.append(
                    f"Training attempt {r['attempt']} succeeded: train loss {r['initial_train_loss']:.3f} → "
                    f"{r['final_train_loss']:.3f}, {r['steps']} steps in {r['duration_s']:.0f} s "
                    f"({r['tokens_per_s']:.0f} tokens/s), actual cost ${r['actual_cost_usd']:.2f}."
                )
            elif r.get("status") == "refused":
                lines.append(f"The run was refused: {r.get('message')}")
            else:
                lines.append(
                    f"Training attempt {r.get('attempt')} {r.get('status')}: {r.get('failure_class')} — "
                    f"{r.get('error') or r.get('message')}"
                )
        elif name == "remediate":
            if r.get("ok"):
                lines.append(f"Remediation {r['retry_count']}/{r['max_retries']}: {r['explanation']}")
            else:
                lines.append(f"Remediation refused: {r.get('message')}")
        elif name == "run_evals":
            if r.get("status") == "refused" or "checks" not in r:
                lines.append(f"Evaluation could not run: {r.get('message')}")
            else:
                checks = ", ".join(f"{c['name']} {'pass' if c['passed'] else 'FAIL'}" for c in r["checks"])
                lines.append(f"Evaluation {'passed' if r.get('ok') else 'failed'}: {checks}.")
        elif not r.get("ok"):
            lines.append(f"{name} refused: {r.get('message')}")
    if report:
        lines.append(f"Report: {report}")
    return "\n".join(f"- {line}" for line in lines) or "Nothing was done."
