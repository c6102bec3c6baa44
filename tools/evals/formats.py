"""Text checks on generated replies: repetition, and the format the references share.

A fine-tune on replies that share a structure (a first line, section markers, a closing line, JSON) should
have taught that structure; ``format_signature`` derives it from the references so it can be scored.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MARKER_LINE = re.compile(r"^\s*(#{1,6}\s+\S.{0,40}?|[A-Za-z][A-Za-z0-9 _/\-]{0,30}:)(?=\s|$)")


def repetition_ratio(tokens: list[Any], n: int) -> float:
    """Share of n-grams that repeat an earlier one: 0 for varied text, near 1 for a loop; empty output is 1."""
    if not tokens:
        return 1.0
    if len(tokens) < n:
        return 0.0
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams)


def _word_shape(word: str) -> str:
    return r"\d+".join(re.escape(part) for part in re.split(r"\d+", word))


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


class FormatSignature(BaseModel):
    """The structure most reference replies share: what fine-tuning on them should have taught."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_line: str | None = None  # a regex for how the first line starts, digits generalised
    markers: list[str] = Field(default_factory=list)  # section markers at the start of a line, e.g. "Fix:"
    last_line: str | None = None  # a closing line every reply ends with
    json_body: bool = False

    @property
    def elements(self) -> int:
        return (self.first_line is not None) + len(self.markers) + (self.last_line is not None) + self.json_body

    def describe(self) -> str:
        parts = [f"first line /{self.first_line}/"] if self.first_line else []
        parts += [f"marker '{m}'" for m in self.markers]
        parts += [f"last line '{self.last_line}'"] if self.last_line else []
        parts += ["valid JSON"] if self.json_body else []
        return ", ".join(parts) or "no shared structure"

    def score(self, text: str) -> float:
        """Share of the signature's elements the text has."""
        if not self.elements:
            return 0.0
        lines = _lines(text)
        hits = 0
        if self.first_line and lines and re.match(self.first_line, lines[0]):
            hits += 1
        hits += sum(1 for m in self.markers if any(line.startswith(m) for line in lines[1:]))
        if self.last_line and lines and lines[-1] == self.last_line:
            hits += 1
        if self.json_body and _is_json(text):
            hits += 1
        return hits / self.elements


def _is_json(text: str) -> bool:
    try:
        return isinstance(json.loads(text.strip()), dict | list)
    except json.JSONDecodeError:
        return False


def format_signature(references: list[str], min_support: float = 0.8) -> FormatSignature:
    """Derive the taught format from the references: a trait is kept when at least min_support of them share it."""
    refs = [_lines(r) for r in references]
    refs = [r for r in refs if r]
    if len(refs) < 2:
        return FormatSignature()
    need = math.ceil(min_support * len(refs))

    def common(values: list[Any]) -> Any | None:
        top = Counter(values).most_common(1)
        return top[0][0] if top and top[0][1] >= need else None

    shapes = [[_word_shape(w) for w in r[0].split()] for r in refs]
    prefix: tuple[str, ...] = ()
    for k in range(1, 7):
        found = common([tuple(s[:k]) for s in shapes if len(s) >= k])
        if found is None:
            break
        prefix = found
    first = r"\s+".join(prefix) + r"(?=\s|$)" if prefix else None

    per_ref = [{m.group(1) for line in r[1:] if (m := MARKER_LINE.match(line))} for r in refs]
    counts = Counter(marker for markers in per_ref for marker in markers)
    markers = sorted(m for m, c in counts.items() if c >= need)
    multi = [r for r in refs if len(r) > 1]
    last = common([r[-1] for r in multi]) if len(multi) >= need else None
    markers = [m for m in markers if m != last]
    json_body = sum(_is_json(t) for t in references) >= need
    return FormatSignature(first_line=first, markers=markers, last_line=last, json_body=json_body)
