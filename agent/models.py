"""Model choice: the embedded offline planner by default, any OpenAI-compatible endpoint by configuration."""

from __future__ import annotations

import os

from langchain_core.language_models import BaseChatModel

from tools.core.errors import AegisError

DEFAULT_MODEL = "offline"


def model_choice(name: str | None = None) -> str:
    return name or os.environ.get("AEGIS_MODEL") or DEFAULT_MODEL


def make_chat_model(name: str | None = None, *, executor: str = "local") -> BaseChatModel:
    """``offline`` or ``openai:MODEL`` (OPENAI_BASE_URL points it at vLLM, Ollama, llama.cpp...)."""
    choice = model_choice(name)
    if choice == "offline":
        from agent.offline_model import OfflinePlanner

        return OfflinePlanner(executor=executor)
    if choice.startswith("openai:") and len(choice) > len("openai:"):
        if not os.environ.get("OPENAI_API_KEY") and not os.environ.get("OPENAI_BASE_URL"):
            raise AegisError(
                f"model '{choice}' needs OPENAI_API_KEY (and OPENAI_BASE_URL for a non-OpenAI endpoint); "
                "set them, or use --model offline"
            )
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            model=choice.split(":", 1)[1],
            temperature=0,
            base_url=os.environ.get("OPENAI_BASE_URL") or None,
            api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
            max_retries=1,
            timeout=float(os.environ.get("AEGIS_MODEL_TIMEOUT_S", "120")),
        )
    raise AegisError(f"unknown model '{choice}'; use 'offline' or 'openai:MODEL_NAME'")
