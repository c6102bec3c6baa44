"""Held-out and training rows as the model sees them: read, formatted, split into prompt and reference, tokenised."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.core.spec import TrainingSpec
from tools.inputs.dataset import load_records, read_snapshot_records
from tools.recipe.formatting import detect_format, prompt_text, to_messages


def read_records(path: str | Path) -> list[dict]:
    """Rows of a dataset, read by the one reader the script and pre-flight use (tools/recipe/data.py).

    A file or folder that is here (a run's held-out rows, a copy) is read as it is; any other name goes
    through the spec's rules (the allowed folders, a Hugging Face dataset id).
    """
    if Path(path).exists():
        return read_snapshot_records(Path(path))
    return load_records(path)


def record_format(spec: TrainingSpec, record: dict) -> str:
    """The row's format: the spec's, or detected per row when the spec says auto (as the training script does)."""
    return detect_format(record) if spec.dataset_format == "auto" else spec.dataset_format


@dataclass(frozen=True)
class Example:
    """A held-out row split the way the model sees it: the prompt text and the reference reply."""

    prompt: str
    reference: str
    asked: str = ""  # what the person asked, without the template: what an echo is measured against


def to_example(tokenizer: Any, record: dict, fmt: str) -> Example:
    """Chat formats: templated prompt and reply. Plain text: first line (or first half) and the rest."""
    split = to_messages(record, fmt)
    if split is not None:
        messages, reply = split
        asked = next((str(m["content"]) for m in reversed(messages) if m["role"] == "user"), "")
        return Example(prompt_text(tokenizer, messages), reply.strip(), asked)
    text = str(record["text"]).strip()
    head, sep, tail = text.partition("\n")
    if not sep or not tail.strip():
        words = text.split()
        head, tail = " ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2 :])
    return Example(head, tail.strip(), head)


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a piece of text, without the special tokens a tokenizer adds around a whole document."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
