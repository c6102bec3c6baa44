"""LangSmith tracing: one named root run per turn, tagged with what a reviewer searches for.

Active only when LANGSMITH_TRACING (or LANGCHAIN_TRACING_V2) is on. Inputs and outputs pass
through a redactor so secrets never reach a trace.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import langsmith
from langsmith.run_helpers import tracing_context

from tools.core.settings import settings

SECRET_PATTERNS = [
    re.compile(r"sk-[A-Za-z0-9_-]{16,}"),
    re.compile(r"lsv2_[A-Za-z0-9_]{16,}"),
    re.compile(r"(?:ak|as)-[A-Za-z0-9]{16,}"),
    re.compile(r"hf_[A-Za-z0-9]{16,}"),
    re.compile(r"ghp_[A-Za-z0-9]{20,}"),
]
SECRET_ENV = (
    "OPENAI_API_KEY",
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "MODAL_TOKEN_SECRET",
    "MODAL_TOKEN_ID",
    "HF_TOKEN",
)


def tracing_enabled() -> bool:
    flag = os.environ.get("LANGSMITH_TRACING") or os.environ.get("LANGCHAIN_TRACING_V2") or ""
    return flag.lower() in ("1", "true", "yes")


def redact(value: Any) -> Any:
    """Replace secret-looking strings and the values of secret environment variables."""
    secrets = [os.environ[k] for k in SECRET_ENV if os.environ.get(k)]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "[redacted]")
        for pattern in SECRET_PATTERNS:
            value = pattern.sub("[redacted]", value)
        return value
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    return value


@contextmanager
def trace_turn(session: Any, thread_id: str) -> Iterator[Callable[[Any], None]]:
    """Wrap one agent turn in a root run; ``finish(result)`` adds the spec hash, estimate, decision, outcome."""
    if not tracing_enabled():
        yield lambda result: None
        return
    client = langsmith.Client(hide_inputs=redact, hide_outputs=redact)
    metadata = {"thread_id": thread_id, "model": session.model_name, "backend": session.backend}
    with (
        tracing_context(enabled=True, client=client),
        langsmith.trace(
            name="aegis-turn",
            run_type="chain",
            inputs={"thread_id": thread_id},
            tags=["aegis"],
            metadata=metadata,
            client=client,
            project_name=os.environ.get("LANGSMITH_PROJECT", "aegis-ml"),
        ) as root,
    ):

        def finish(result: Any) -> None:
            job = result.job
            extra: dict[str, Any] = {"outcome": job.status if job else "no job"}
            if job is not None and job.spec is not None:
                extra["spec_hash"] = job.spec.spec_hash()
                extra["run_id"] = job.run_id
            if job is not None and job.estimate is not None:
                extra["estimate_usd"] = round(job.estimate.estimated_cost_usd, 4)
            if job is not None:
                extra["gate_decision"] = job.decision or (job.gate.outcome if job.gate else None)
                extra["decided_by"] = job.decided_by
            root.add_metadata(extra)
            root.add_tags([f"outcome:{extra['outcome']}"])
            root.end(outputs=redact({"replies": result.replies, "pending": result.pending is not None, **extra}))

        yield finish
    client.flush(timeout=settings().trace_flush_timeout_s)  # never hang a turn on tracing
