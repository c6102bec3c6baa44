"""Which chat model drives the agent: the offline planner by default, any OpenAI-compatible endpoint by configuration.

``langchain_openai`` (and the openai SDK under it, about half a second) is imported only when an OpenAI model
is chosen: the one lazy import of this module.
"""

from __future__ import annotations

import os

from langchain_core.language_models import BaseChatModel

from agent.offline_model import OfflinePlanner
from tools.core.errors import AegisError
from tools.core.settings import settings

DEFAULT_MODEL = "offline"


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
        from langchain_openai import ChatOpenAI  # heavy: only for an OpenAI model

        return ChatOpenAI(
            model=choice.split(":", 1)[1],
            temperature=0,
            base_url=os.environ.get("OPENAI_BASE_URL") or None,
            api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
            max_retries=1,
            timeout=settings().model_timeout_s,
        )
    raise AegisError(f"unknown model '{choice}'; use 'offline' or 'openai:MODEL_NAME'")
