"""One conversation with the agent, shared by the CLI, `aegis chat` and Chainlit.

Threads are checkpointed in SQLite under the runs folder, or in the PostgreSQL that AEGIS_DATABASE_URL names
(agent/checkpoints.py), so a run paused for approval survives the process: any later process, on any server
sharing the database, can show the pending approval and resume it, exactly once.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.types import Command
from pydantic import BaseModel, ConfigDict

from agent.browse import help_text
from agent.checkpoints import open_checkpoints, unreadable
from agent.extraction import extract_request
from agent.graph import build_graph, extraction_prompt, planner_name
from agent.lineage import CONTINUE_KEY
from agent.models import make_chat_model, model_choice
from agent.read_only_tools import call_read_only, read_only_call, reply_text
from agent.tracing import trace_turn
from tools.core.database import DATABASE_ERRORS, Location, exclusive, is_postgres, shared_database
from tools.core.errors import AegisError
from tools.core.paths import runs_dir
from tools.core.person import person_or_cli
from tools.core.runlog import new_run_id
from tools.core.settings import settings
from tools.core.spec import BudgetPolicy
from tools.core.status import Decision
from tools.core.stop import clear_stop
from tools.job.state import JobState
from tools.report.approval import ApprovalAnswer, ApprovalRequest

EventFn = Callable[[dict[str, Any]], None]
THREAD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# The project's own types a checkpoint may hold: threads answered before answers were stored as JSON hold a
# Decision. Naming them is LangGraph's allowlist: no warning for them, and no other type is imported on load.
CHECKPOINT_TYPES: tuple[type, ...] = (Decision,)


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


def check_thread_id(thread_id: str) -> str:
    if not isinstance(thread_id, str) or not THREAD_ID.match(thread_id):
        raise AegisError(
            f"thread id {thread_id!r} is not one Aegis made: use the id `aegis run` printed (letters, digits, . _ -)"
        )
    return thread_id


def busy(thread_id: str) -> AegisError:
    return AegisError(
        f"thread {thread_id} is busy: another process or tab is carrying out a turn or an answer in it "
        "right now; nothing was done. Try again when it has finished"
    )


@contextmanager
def thread_lock(thread_id: str, location: Location | None = None) -> Iterator[None]:
    """One turn per thread at a time, across every process and tab, never waited on: an OS file lock, or, where
    threads live in PostgreSQL, an advisory lock every server sharing it sees (let go if the process dies).

    A second ``aegis resume`` of the same thread, or a second tab answering, is told so at once instead of
    resuming the same pause twice.
    """
    check_thread_id(thread_id)
    if location is not None and is_postgres(location):
        with ExitStack() as held:
            try:
                got = held.enter_context(exclusive(str(location), f"thread:{thread_id}"))
            except DATABASE_ERRORS as exc:
                raise unreadable(location, exc) from None
            if not got:
                raise busy(thread_id)
            yield
        return
    folder = runs_dir() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{thread_id}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy(thread_id) from None
        yield
    finally:
        os.close(fd)


class AgentSession:
    def __init__(
        self,
        model: str | None = None,
        *,
        backend: str | None = None,
        policy: BudgetPolicy | None = None,
        max_retries: int = 3,
        local_memory_limit_mb: int | None = None,
        chat_model: Any = None,
        db_path: Path | None = None,
    ):
        self.model_name = model_choice(model) if chat_model is None else getattr(chat_model, "_llm_type", "custom")
        self.backend = backend or settings().backend
        self.policy = policy or BudgetPolicy.from_config()
        self.max_retries = max_retries
        self.local_memory_limit_mb = local_memory_limit_mb
        self.location: Location = Path(db_path) if db_path else shared_database() or checkpoint_path()
        self.threads = open_checkpoints(self.location, JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES))
        self.checkpointer = self.threads.saver
        self.chat_model = chat_model or make_chat_model(model)
        self.graph = build_graph(self.chat_model, checkpointer=self.checkpointer)

    def close(self) -> None:
        self.threads.close()

    def _config(self, thread_id: str) -> dict[str, Any]:
        return {
            "configurable": {"thread_id": thread_id},
            "recursion_limit": 100,
            "run_name": "aegis-agent",
            "tags": ["aegis", f"backend:{self.backend}", f"model:{self.model_name}"],
            "metadata": {"thread_id": thread_id},
        }

    def send(
        self,
        text: str,
        thread_id: str | None = None,
        on_event: EventFn | None = None,
        *,
        person: str | None = None,
        marks: dict[str, str] | None = None,
    ) -> TurnResult:
        """A person's message: starts a thread (its spending counts against ``person``, by default the CLI's), or
        continues one. ``marks`` is what a button of the server's own means (never the person's text)."""
        thread_id = check_thread_id(thread_id) if thread_id else new_run_id()
        with thread_lock(thread_id, self.location):
            inputs: dict[str, Any] = {"messages": [HumanMessage(text, additional_kwargs=marks or {})]}
            if not self._state(thread_id).values:
                inputs |= {
                    "thread_id": thread_id,
                    "person": person_or_cli(person),
                    "policy": self.policy.model_dump(mode="json"),  # plain JSON: nothing to import on load
                    "max_retries": self.max_retries,
                    "backend": self.backend,
                    "local_memory_limit_mb": self.local_memory_limit_mb,
                }
            elif (pending := self.pending(thread_id)) is not None:
                return self._aside(thread_id, text, pending, on_event)
            return self._turn(thread_id, inputs, on_event)

    def _aside(self, thread_id: str, text: str, pending: ApprovalRequest, on_event: EventFn | None) -> TurnResult:
        """A message while the thread waits at the gate: a read-only request is answered beside the pause, which
        stays as it was (neither answered nor lost); anything else is told to answer the approval first."""
        request, note = extract_request(self.chat_model, extraction_prompt(), text)
        if not request.read_only:
            raise AegisError(
                f"thread {thread_id} is waiting for an approval; answer it first (approve/optimize/cancel). "
                'Meanwhile you can ask what needs no approval: "what runs do I have?", "help"'
            )
        emit = on_event or (lambda _event: None)
        call = read_only_call(request)
        if call is None:
            reply = help_text(planner_name(self.chat_model))
        else:
            emit({"kind": "tool_call", "name": call["name"], "args": call["args"], "id": call["id"]})
            result = call_read_only(call)
            emit({"kind": "tool_result", "id": call["id"], "name": call["name"], "text": result.model_dump_json()})
            reply = reply_text([result])
        reply = f"{note}\n\n{reply}" if note else reply
        emit({"kind": "message", "node": "read_only", "text": reply})
        return TurnResult(thread_id=thread_id, replies=[reply], pending=pending, job=self.job(thread_id))

    def continue_run(
        self, run_id: str, thread_id: str | None = None, on_event: EventFn | None = None, *, person: str | None = None
    ) -> TurnResult:
        """A Continue button: the run continued in this thread, as if asked in words, through the same gate."""
        return self.send(f"continue run {run_id}", thread_id, on_event, person=person, marks={CONTINUE_KEY: run_id})

    def pending(self, thread_id: str) -> ApprovalRequest | None:
        snapshot = self._state(check_thread_id(thread_id))
        for interrupt in snapshot.interrupts:
            return ApprovalRequest.model_validate(interrupt.value)
        return None

    def resume(
        self, thread_id: str, answer: ApprovalAnswer, *, spec_hash: str | None = None, on_event: EventFn | None = None
    ) -> TurnResult:
        """A person's answer at the gate, carried out at most once whatever the number of processes answering.

        Refused when nothing is pending, or the answer was for another request or spec.
        """
        with thread_lock(thread_id, self.location):
            pending = self.pending(thread_id)
            if pending is None:
                raise AegisError(f"thread {thread_id} has no pending approval (already answered, or never paused)")
            if spec_hash is not None and spec_hash != pending.spec_hash:
                raise AegisError("that approval was for a different spec; the pending request has changed")
            if answer.request_id is not None and answer.request_id != pending.request_id:
                raise AegisError("that answer was for another approval request; the pending request has changed")
            answer = answer.model_copy(update={"request_id": pending.request_id})
            return self._turn(thread_id, Command(resume=answer.model_dump(mode="json")), on_event)

    def job(self, thread_id: str) -> JobState | None:
        raw = self._state(check_thread_id(thread_id)).values.get("job")
        return JobState.model_validate(raw) if raw else None

    def transcript(self, thread_id: str) -> list[tuple[str, str]]:
        """The thread's conversation as (who, text): the person's messages and the agent's replies, in order."""
        messages = self._state(check_thread_id(thread_id)).values.get("messages", [])
        kept = [m for m in messages if isinstance(m, HumanMessage | AIMessage) and m.content]
        return [("user" if isinstance(m, HumanMessage) else "assistant", str(m.content)) for m in kept]

    def _state(self, thread_id: str) -> Any:
        try:
            return self.graph.get_state(self._config(thread_id))
        except DATABASE_ERRORS as exc:
            raise unreadable(self.location, exc) from None

    def _turn(self, thread_id: str, inputs: Any, on_event: EventFn | None) -> TurnResult:
        config = self._config(thread_id)
        clear_stop(thread_id)  # a Stop pressed during an earlier turn does not stop this one
        before = len(self._state(thread_id).values.get("messages", []))
        with trace_turn(self, thread_id) as finish:
            for mode, chunk in self.graph.stream(inputs, config, stream_mode=["updates", "custom"]):
                if on_event is not None:
                    for event in _events(mode, chunk):
                        on_event(event)
            result = self._result(thread_id, before)
            finish(result)
        return result

    def _result(self, thread_id: str, before: int) -> TurnResult:
        values = self._state(thread_id).values
        new = values.get("messages", [])[before:]
        replies = [str(m.content) for m in new if isinstance(m, AIMessage) and m.content]
        return TurnResult(
            thread_id=thread_id,
            replies=replies,
            pending=self.pending(thread_id),
            job=JobState.model_validate(values["job"]) if values.get("job") else None,
        )


def _events(mode: str, chunk: Any) -> Iterator[dict[str, Any]]:
    """Flatten LangGraph's stream into small UI events: tool_call, tool_result, progress, message, approval.

    A tool_result's ``text`` is the tool's typed result as JSON: read it with ``agent.results.read_tool_result``.
    """
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
                yield {
                    "kind": "tool_result",
                    "id": message.tool_call_id,
                    "name": message.name,
                    "text": str(message.content),
                }


@contextmanager
def open_session(**kwargs: Any) -> Iterator[AgentSession]:
    session = AgentSession(**kwargs)
    try:
        yield session
    finally:
        session.close()
