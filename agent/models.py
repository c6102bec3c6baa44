"""Which chat model drives the agent: the offline planner by default, any OpenAI-compatible endpoint by configuration.

``langchain_openai`` (and the openai SDK under it, about half a second) is imported only when an OpenAI model
is chosen: the one lazy import of this module.

A model call a person waits on is bounded: it ends after AEGIS_MODEL_TIMEOUT_S and is not sent again after a
timeout (a model too slow for a prompt is as slow for the same prompt again: the intake's retries then cost
nothing and the built-in rules take over at once), and Ctrl-C ends it at once instead of when the answer comes.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from agent.offline_model import OfflinePlanner
from tools.core.errors import AegisError
from tools.core.settings import settings
from tools.core.stop import stop_requested

DEFAULT_MODEL = "offline"
POLL_S = 0.1  # how often a waiting model call looks for Ctrl-C
ABANDONED_CALL_GRACE_S = 5.0  # the HTTP client's limit is this much later than the person's: Aegis's fires first

T = TypeVar("T")


class ModelTimeout(AegisError):
    """The chat model gave no answer within AEGIS_MODEL_TIMEOUT_S."""


class ModelCallInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a chat model call: the call is abandoned and nothing more is started."""


def model_choice(name: str | None = None) -> str:
    """The model asked for: ``name``, else AEGIS_MODEL, else the offline planner."""
    return name or settings().model or DEFAULT_MODEL


def make_chat_model(name: str | None = None) -> BaseChatModel:
    """``offline`` or ``openai:MODEL`` (OPENAI_BASE_URL points it at vLLM, Ollama, llama.cpp...)."""
    choice = model_choice(name)
    if choice == "offline":
        return OfflinePlanner()
    if choice.startswith("openai:") and len(choice) > len("openai:"):
        if not os.environ.get("OPENAI_API_KEY") and not os.environ.get("OPENAI_BASE_URL"):
            raise AegisError(
                f"model '{choice}' needs OPENAI_API_KEY (and OPENAI_BASE_URL for a non-OpenAI endpoint); "
                "set them, or use --model offline"
            )
        timeout_s = settings().model_timeout_s
        return _bounded_chat_openai()(
            model=choice.split(":", 1)[1],
            temperature=0,
            base_url=os.environ.get("OPENAI_BASE_URL") or None,
            api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
            max_retries=0,  # the intake and the agent loop retry with the problem shown; a timeout is not retried
            answer_timeout_s=timeout_s,
            timeout=timeout_s + ABANDONED_CALL_GRACE_S,  # the client's own limit ends an abandoned call's thread
            disable_streaming=True,  # every call goes through _generate, where the timeout and Ctrl-C are handled
        )
    raise AegisError(f"unknown model '{choice}'; use 'offline' or 'openai:MODEL_NAME'")


@cache
def _bounded_chat_openai() -> type[BaseChatModel]:
    """ChatOpenAI whose calls end at the timeout or at Ctrl-C (a class made once, after the lazy import)."""
    from langchain_openai import ChatOpenAI  # heavy: only for an OpenAI model

    class BoundedChatOpenAI(ChatOpenAI):
        answer_timeout_s: float

        def _generate(
            self,
            messages: list[BaseMessage],
            stop: list[str] | None = None,
            run_manager: CallbackManagerForLLMRun | None = None,
            **kwargs: Any,
        ) -> ChatResult:
            generate = super()._generate
            return interruptible(lambda: generate(messages, stop, run_manager, **kwargs), self.answer_timeout_s)

        def with_structured_output(self, schema: Any = None, **kwargs: Any) -> Runnable:
            return not_after_a_timeout(super().with_structured_output(schema, **kwargs))

    return BoundedChatOpenAI


def interruptible(call: Callable[[], T], timeout_s: float) -> T:
    """``call()`` in a thread of its own, abandoned at ``timeout_s`` or at once when a stop is asked for (Ctrl-C).

    A signal handler only sets a flag, and a blocking HTTP read does not look at it; waiting here instead is
    what ends a model call at the first Ctrl-C. The abandoned request ends at the client's timeout, or with the
    process.
    """
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the waiting thread as it is
            outcome["error"] = exc
        finally:
            done.set()

    context = contextvars.copy_context()  # tracing and callbacks read the caller's context
    threading.Thread(target=context.run, args=(run,), name="aegis-model-call", daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not done.wait(POLL_S):
        if stop_requested():
            raise ModelCallInterrupted("interrupted during a call of the chat model; nothing more was started")
        if time.monotonic() > deadline:
            raise ModelTimeout(f"the model gave no answer within {timeout_s:g} s (AEGIS_MODEL_TIMEOUT_S)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def not_after_a_timeout(runnable: Runnable) -> Runnable:
    """``runnable``, refused at once after one of its calls timed out: retries of a timed-out prompt cost nothing."""
    timed_out: list[ModelTimeout] = []

    def call(value: Any, config: RunnableConfig) -> Any:
        if timed_out:
            raise ModelTimeout(f"{timed_out[0]}; not asked again")
        try:
            return runnable.invoke(value, config)
        except ModelTimeout as exc:
            timed_out.append(exc)
            raise

    return RunnableLambda(call, name="StructuredOutputUntilATimeout")
