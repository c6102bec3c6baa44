"""The model's own tokenizer, found on this machine first, loaded once a process.

Token counts that price a run must be the model's: a tokenizer that cannot be had falls back to an
approximation that says so, and one that turns text into no tokens is an error, never an exact zero.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from tools.core.errors import DataError
from tools.inputs.local_models import hub_reachable, resolve_model
from tools.inputs.model_config import hub_id


def load_tokenizer_offline(model_name: str) -> Any | None:
    """The model's tokenizer if it is on this machine (a built local model, a folder, the HF cache), else None."""
    from transformers import AutoTokenizer

    candidates = []
    try:
        candidates.append(resolve_model(model_name, build=False).path)
    except Exception:  # not built, not a local model, or local models absent: try the next source
        pass
    candidates.append(hub_id(model_name))
    for source in candidates:
        if source.lower().startswith("local:"):
            continue
        try:
            return AutoTokenizer.from_pretrained(source, local_files_only=True, trust_remote_code=False)
        except Exception:  # no cached files or no tokenizer: the estimate falls back to chars/4
            continue
    return None


@cache
def load_tokenizer(model_name: str) -> Any | None:
    """The model's own tokenizer, loaded once per process: on this machine, or from the hub when it answers."""
    tokenizer = load_tokenizer_offline(model_name)
    if tokenizer is None and hub_reachable() and not model_name.lower().startswith("local:"):
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(hub_id(model_name), trust_remote_code=False)
        except Exception:  # gated, missing or without tokenizer files: counts fall back to chars/4
            tokenizer = None
    if tokenizer is not None and not tokenizer("probe text")["input_ids"]:
        raise DataError(f"the tokenizer of '{model_name}' turns text into no tokens; it cannot measure the data")
    return tokenizer
