"""Held-out and training rows as the model sees them: read, formatted, split into prompt and reference, tokenised."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.core.errors import DataError
from tools.core.spec import TrainingSpec
from tools.recipe.formatting import detect_format, prompt_text, to_messages


def read_records(path: Path) -> list[dict]:
    """Rows of a JSON-lines (or JSON list) dataset."""
    if not path.is_file():
        raise DataError(f"dataset '{path}' does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise DataError(f"dataset '{path}' is not valid JSON: {exc}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DataError(f"dataset '{path}' must hold one JSON object per row")
    return rows


def record_format(spec: TrainingSpec, record: dict) -> str:
    """The row's format: the spec's, or detected per row when the spec says auto (as the training script does)."""
    return detect_format(record) if spec.dataset_format == "auto" else spec.dataset_format


@dataclass(frozen=True)
class Example:
    """A held-out row split the way the model sees it: the prompt text and the reference reply."""

    prompt: str
    reference: str


def to_example(tokenizer: Any, record: dict, fmt: str) -> Example:
    """Chat formats: templated prompt and reply. Plain text: first line (or first half) and the rest."""
    split = to_messages(record, fmt)
    if split is not None:
        messages, reply = split
        return Example(prompt_text(tokenizer, messages), reply.strip())
    text = str(record["text"]).strip()
    head, sep, tail = text.partition("\n")
    if not sep or not tail.strip():
        words = text.split()
        head, tail = " ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2 :])
    return Example(head, tail.strip())


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a piece of text, without the special tokens a tokenizer adds around a whole document."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
