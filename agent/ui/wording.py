"""Words on the page that depend on what plans: the footer names the planner in use instead of Chainlit's
"LLMs can make mistakes", which is wrong for the rule-based offline planner and vague for a real model."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from agent.models import model_choice

OFFLINE = "offline"


def watermark_text(model: str) -> str:
    """What plans each request, and what a person should check before approving."""
    if model == OFFLINE:
        return "Requests are read by Aegis's built-in rules (no language model); check the spec on the approval card."
    name = model.split(":", 1)[-1]
    return f"Requests are planned by the language model {name}, which can misread them; check the spec on the card."


def with_watermark(load: Callable[[str], dict[str, Any]], text: str) -> Callable[[str], dict[str, Any]]:
    """Chainlit's translation loader, with the footer's words replaced in every language."""

    @functools.wraps(load)
    def loaded(language: str) -> dict[str, Any]:
        translation = load(language)
        chat = translation.get("chat")
        if isinstance(chat, dict):
            chat["watermark"] = text
        return translation

    return loaded


def watermark_for(config: Any) -> None:
    """Install the footer for the model this server plans with (AEGIS_MODEL), once, at import.

    Chainlit's config is a pydantic model without such a field, so the loader is set on the instance itself.
    """
    object.__setattr__(
        config, "load_translation", with_watermark(config.load_translation, watermark_text(model_choice()))
    )
