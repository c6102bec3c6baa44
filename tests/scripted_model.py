"""A chat model scripted with one list of tool calls per turn (after LangGraph's tests/model.py).

Structured output goes through the same rule parser as the offline planner, so the tests drive
the real intake with a model that does whatever the script says afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable

from agent.offline_model import OfflinePlanner


class ScriptedModel(BaseChatModel):
    """Each agent call pops the next script entry: a list of (tool, args) calls, or a final text."""

    script: list[Any]
    calls: list[list[str]] = []

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable:
        return self

    def with_structured_output(self, schema: Any, **kwargs: Any) -> Runnable:
        return OfflinePlanner().with_structured_output(schema)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        step = self.script.pop(0) if self.script else "done"
        if isinstance(step, str):
            message = AIMessage(step)
        else:
            calls = [
                {"name": name, "args": args, "id": f"call_{len(self.calls)}_{i}", "type": "tool_call"}
                for i, (name, args) in enumerate(step)
            ]
            self.calls.append([c["name"] for c in calls])
            message = AIMessage("", tool_calls=calls)
        return ChatResult(generations=[ChatGeneration(message=message)])
