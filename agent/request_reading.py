"""A request being read, and the number patterns its rules share.

Its own module so that the rule modules (``agent.request_rules``, ``agent.gpu_words``) share these without
importing each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# A number keeps the sign the person wrote ("-2 epochs" is -2, refused by the intake, never 2); a hyphen inside a
# word ("a100-80gb", "1-2") is not a sign.
SIGN = r"(?:(?<![\w.])[-−])?"
NUM = rf"({SIGN}\d+(?:\.\d+)?(?:e-?\d+)?)"
INT = rf"({SIGN}\d+)"
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}


@dataclass
class Reading:
    """A request being read: the text, what was mapped to fields, which parts were read, what was not understood."""

    text: str
    low: str
    out: dict[str, Any] = field(default_factory=dict)
    used: list[tuple[int, int]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    def find(self, pattern: str) -> re.Match[str] | None:
        """The first match of ``pattern`` in what is still unread; its span is marked read."""
        match = re.search(pattern, self.rest(), re.I)
        if match:
            self.used.append(match.span())
        return match

    def find_all(self, pattern: str) -> list[re.Match[str]]:
        matches = list(re.finditer(pattern, self.rest(), re.I))
        self.used.extend(m.span() for m in matches)
        return matches

    def rest(self) -> str:
        """The lower-cased text with every part already read blanked out (same length, so spans still line up)."""
        chars = list(self.low)
        for start, end in self.used:
            chars[start:end] = " " * (end - start)
        return "".join(chars)

    def original(self, match: re.Match[str], group: int = 0) -> str:
        """What the person wrote for a match (the text is matched lower-cased)."""
        return self.text[match.start(group) : match.end(group)]

    def not_understood(self, what: str) -> None:
        if what not in self.unknown:
            self.unknown.append(what)


def number(text: str) -> float:
    """A number as matched, with a typographic minus read as a sign."""
    return float(text.replace("−", "-"))


def whole(text: str) -> int:
    """A whole number as matched, with a typographic minus read as a sign."""
    return int(text.replace("−", "-"))
