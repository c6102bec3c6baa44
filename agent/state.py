"""The graph's state. The job is a plain dict (a JobState dump) so the checkpointer can store it."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages


class AgentState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    job: dict[str, Any] | None
    spec_draft: dict[str, Any]
    estimate_only: bool  # the person asked only for the price; a turn that says "go ahead" lifts it
    thread_id: str
    person: str  # whose limits the thread's spending counts against
    policy: dict[str, Any]
    max_retries: int
    backend: str
    local_memory_limit_mb: int | None
