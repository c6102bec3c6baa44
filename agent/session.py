"""One conversation with the agent, shared by the CLI, `aegis chat` and Chainlit.

Threads are checkpointed in SQLite under the runs folder, so a run paused for approval survives
the process: any later process can show the pending approval and resume it, exactly once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command
from pydantic import BaseModel, ConfigDict

from agent.graph import build_graph
from agent.models import make_chat_model, model_choice
from agent.tracing import trace_turn
from tools.approval import ApprovalAnswer, ApprovalRequest
from tools.errors import AegisError
from tools.job import JobState
from tools.paths import runs_dir
from tools.runlog import new_run_id
from tools.spec import BudgetPolicy

EventFn = Callable[[dict[str, Any]], None]
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class TurnResult(BaseModel):
    """What one turn produced: the agent's words, a pending approval if it paused, and the job."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    thread_id: str
    replies: list[str]
    pending: ApprovalRequest | None = None
    job: JobState | None = None


def checkpoint_path() -> Path:
    path = runs_dir() / "checkpoints.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _lock(thread_id: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(thread_id, threading.Lock())


class AgentSession:
    def __init__(
        self,
        model: str | None = None,
        *,
        executor: str = "local",
        policy: BudgetPolicy | None = None,
        max_retries: int = 3,
        local_memory_limit_mb: int | None = None,
        chat_model: Any = None,
        db_path: Path | None = None,
    ):
        self.model_name = model_choice(model) if chat_model is None else getattr(chat_model, "_llm_type", "custom")
        self.executor = executor
        self.policy = policy or BudgetPolicy.from_config()
        self.max_retries = max_retries
        self.local_memory_limit_mb = local_memory_limit_mb
        self.conn = sqlite3.connect(str(db_path or checkpoint_path()), check_same_thread=False)
        self.checkpointer = SqliteSaver(self.conn)
        self.chat_model = chat_model or make_chat_model(model, executor=executor)
        self.graph = build_graph(self.chat_model, checkpointer=self.checkpointer, executor=executor)

    def close(self) -> None:
        self.conn.close()

    def _config(self, thread_id: str) -> dict[str, Any]:
        return {
            "configurable": {"thread_id": thread_id},
            "recursion_limit": 100,
            "run_name": "aegis-agent",
            "tags": ["aegis", f"executor:{self.executor}", f"model:{self.model_name}"],
            "metadata": {"thread_id": thread_id},
        }

    def send(self, text: str, thread_id: str | None = None, on_event: EventFn | None = None) -> TurnResult:
        """A person's message: starts a thread, or continues one."""
        thread_id = thread_id or new_run_id()
        inputs: dict[str, Any] = {"messages": [HumanMessage(text)]}
        if not self.graph.get_state(self._config(thread_id)).values:
            inputs |= {
                "thread_id": thread_id,
                "policy": self.policy.model_dump(),
                "max_retries": self.max_retries,
                "executor": self.executor,
                "local_memory_limit_mb": self.local_memory_limit_mb,
            }
        elif self.pending(thread_id) is not None:
            raise AegisError(
                f"thread {thread_id} is waiting for an approval; answer it first (approve/optimize/cancel)"
            )
        return self._turn(thread_id, inputs, on_event)

    def pending(self, thread_id: str) -> ApprovalRequest | None:
        snapshot = self.graph.get_state(self._config(thread_id))
        for interrupt in snapshot.interrupts:
            return ApprovalRequest.model_validate(interrupt.value)
        return None

    def resume(
        self, thread_id: str, answer: ApprovalAnswer, *, spec_hash: str | None = None, on_event: EventFn | None = None
    ) -> TurnResult:
        """A person's answer at the gate. Refused when nothing is pending, or it was for another spec."""
        with _lock(thread_id):
            pending = self.pending(thread_id)
            if pending is None:
                raise AegisError(f"thread {thread_id} has no pending approval (already answered, or never paused)")
            if spec_hash is not None and spec_hash != pending.spec_hash:
                raise AegisError("that approval was for a different spec; the pending request has changed")
            return self._turn(thread_id, Command(resume=answer.model_dump()), on_event)

    def job(self, thread_id: str) -> JobState | None:
        raw = self.graph.get_state(self._config(thread_id)).values.get("job")
        return JobState.model_validate(raw) if raw else None

    def _turn(self, thread_id: str, inputs: Any, on_event: EventFn | None) -> TurnResult:
        config = self._config(thread_id)
        before = len(self.graph.get_state(config).values.get("messages", []))
        with trace_turn(self, thread_id) as finish:
            for mode, chunk in self.graph.stream(inputs, config, stream_mode=["updates", "custom"]):
                if on_event is not None:
                    for event in _events(mode, chunk):
                        on_event(event)
            result = self._result(thread_id, before)
            finish(result)
        return result

    def _result(self, thread_id: str, before: int) -> TurnResult:
        values = self.graph.get_state(self._config(thread_id)).values
        new = values.get("messages", [])[before:]
        replies = [str(m.content) for m in new if isinstance(m, AIMessage) and m.content]
        return TurnResult(
            thread_id=thread_id,
            replies=replies,
            pending=self.pending(thread_id),
            job=JobState.model_validate(values["job"]) if values.get("job") else None,
        )


def _events(mode: str, chunk: Any) -> Iterator[dict[str, Any]]:
    """Flatten LangGraph's stream into small UI events: tool_call, tool_result, progress, message."""
    if mode == "custom":
        yield dict(chunk)
        return
    for node, update in (chunk or {}).items():
        if node == "__interrupt__":
            for interrupt in update:
                yield {"kind": "approval", "request": interrupt.value}
            continue
        for message in (update or {}).get("messages", []) if isinstance(update, dict) else []:
            if isinstance(message, AIMessage):
                for call in message.tool_calls:
                    yield {"kind": "tool_call", "name": call["name"], "args": call["args"], "id": call["id"]}
                if message.content:
                    yield {"kind": "message", "node": node, "text": str(message.content)}
            elif isinstance(message, ToolMessage):
                yield {"kind": "tool_result", "id": message.tool_call_id, "text": str(message.content)}


@contextmanager
def open_session(**kwargs: Any) -> Iterator[AgentSession]:
    session = AgentSession(**kwargs)
    try:
        yield session
    finally:
        session.close()
