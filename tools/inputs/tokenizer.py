"""The model's own tokenizer, found on this machine first, loaded once a process.

Token counts that price a run must be the model's: a bundled local model is built (offline, once) so its
tokenizer is there for the estimate as it is for pre-flight; a tokenizer that cannot be had falls back to an
approximation that says so; and one that turns text into no tokens (a folder holding a config.json but no
tokenizer files loads as an empty tokenizer) is an error, never an exact count of zero.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from tools.core.errors import DataError
from tools.inputs.local_models import hub_reachable, is_local_name, resolve_model
from tools.inputs.model_config import hub_id

PROBE = "probe text"


def _checked(tokenizer: Any, model_name: str, source: str) -> Any:
    """The tokenizer, if it turns text into tokens; a DataError naming where it came from otherwise."""
    try:
        ids = tokenizer(PROBE, add_special_tokens=False)["input_ids"]
    except Exception as exc:  # a broken tokenizer file: the same verdict as an empty one
        raise DataError(f"the tokenizer of '{model_name}' (from {source}) cannot tokenize text: {exc}") from None
    if not ids:
        raise DataError(
            f"the tokenizer of '{model_name}' (from {source}) turns text into no tokens, so it cannot measure the "
            "data (a folder with a config.json but no tokenizer files loads like this); add the tokenizer files "
            "(tokenizer.json, or vocab and merges) or name the model by its hub id"
        )
    return tokenizer


def _sources(model_name: str) -> list[str]:
    """Where the tokenizer may be on this machine: a bundled model (built if need be), a folder, the HF cache."""
    candidates = []
    try:
        candidates.append(resolve_model(model_name).path)  # builds a bundled model, as pre-flight does
    except Exception:  # not a local model, or local models absent: try the next source
        pass
    candidates.append(hub_id(model_name))
    return [source for source in candidates if not source.lower().startswith("local:")]


def load_tokenizer_offline(model_name: str) -> Any | None:
    """The model's tokenizer if it can be had on this machine (a bundled model, a folder, the HF cache), else None.

    Raises DataError when what is found turns text into no tokens.
    """
    from transformers import AutoTokenizer

    for source in _sources(model_name):
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True, trust_remote_code=False)
        except Exception:  # no cached files or no tokenizer: the estimate falls back to chars/4
            continue
        return _checked(tokenizer, model_name, source)
    return None


@cache
def load_tokenizer(model_name: str) -> Any | None:
    """The model's own tokenizer, loaded once per process: on this machine, or from the hub when it answers."""
    tokenizer = load_tokenizer_offline(model_name)
    if tokenizer is None and hub_reachable() and not is_local_name(model_name):
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(hub_id(model_name), trust_remote_code=False)
        except Exception:  # gated, missing or without tokenizer files: counts fall back to chars/4
            return None
        return _checked(tokenizer, model_name, "the hub")
    return tokenizer
