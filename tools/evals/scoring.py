"""Scores of one reply: against its reference (exact, contains, ROUGE-L), and whether it is degenerate at all.

ROUGE-L is Google's ``rouge-score`` package (its own tokenizer: lower-cased ASCII words and digits, so text in
other scripts scores 0 there; exact and contains are Unicode-aware). Degenerate output is judged on every
generation: a reply that is empty, only punctuation or symbols, one token over and over, or the prompt echoed is
not an answer, whatever its loss.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import cache
from typing import Any

from rouge_score import rouge_scorer

MAX_CHARS = 20_000  # a reply longer than this is judged on its first MAX_CHARS characters: bounded work
MAX_WORDS = 400  # the echo measure compares at most this many words of each side (quadratic LCS)
WORD = re.compile(r"\w+")
DOMINANT_SHARE = 0.8  # one word this share of a reply of DOMINANT_MIN words or more: one token repeated
DOMINANT_MIN = 4
ECHO_MIN_WORDS = 3
ECHO_SHARE = 0.9  # this share of the reply's words, in order, taken from the prompt ...
ECHO_COVER = 0.6  # ... and covering this share of the prompt's words: an echo ('The capital of.' is not)


def normalise(text: str) -> str:
    """Case, width and spacing folded, zero-width characters dropped, outer punctuation stripped."""
    text = unicodedata.normalize("NFKC", text[:MAX_CHARS]).casefold()
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = " ".join(text.split())
    return text.strip("".join(ch for ch in set(text) if _is_mark(ch)) + " ")


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


def exact(reply: str, reference: str) -> int:
    return int(bool(normalise(reference)) and normalise(reply) == normalise(reference))


def contains(reply: str, reference: str) -> int:
    """1 when the normalised reference is in the normalised reply, on word boundaries ('4' is not in '14')."""
    ref = normalise(reference)
    if not ref:
        return 0
    return int(re.search(rf"(?<!\w){re.escape(ref)}(?!\w)", normalise(reply)) is not None)


@cache
def _scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(reply: str, reference: str) -> float:
    """ROUGE-L F1 of the reply against the reference (rouge-score)."""
    return float(_scorer().score(reference[:MAX_CHARS], reply[:MAX_CHARS])["rougeL"].fmeasure)


def task_scores(reply: str, reference: str) -> dict[str, float]:
    return {
        "exact": exact(reply, reference),
        "contains": contains(reply, reference),
        "rouge_l": rouge_l(reply, reference),
    }


def degenerate_reason(reply: str, prompt: str = "", token_ids: list[Any] | None = None) -> str | None:
    """Why a reply is no answer at all, or None: empty, only marks, one token repeated, the prompt echoed.

    prompt: what was asked, without a chat template's words (they would hide an echo of the question).
    """
    text = reply[:MAX_CHARS]
    visible = [ch for ch in text if unicodedata.category(ch)[0] not in "ZC"]
    if not visible:
        return "empty"
    if all(_is_mark(ch) for ch in visible):
        return "only punctuation or symbols"
    if len(visible) >= DOMINANT_MIN and len(set(visible)) == 1:
        return f"one character repeated ('{visible[0]}' ×{len(visible)})"
    words = WORD.findall(normalise(text))
    if len(words) >= 2 and words[-1] != words[-2] and words[-2].startswith(words[-1]):
        words[-1] = words[-2]  # cut off at the token limit: 'SENDBUCKET SENDB' is the word twice
    top, count = Counter(words).most_common(1)[0] if words else ("", 0)
    if len(words) >= 2 and count == len(words):
        return f"one word repeated ('{top[:40]}' ×{count})"
    if len(words) >= DOMINANT_MIN and count / len(words) >= DOMINANT_SHARE:
        return f"one word makes {count / len(words):.0%} of the reply ('{top[:40]}')"
    if token_ids and len(token_ids) >= 3 and len(set(token_ids)) == 1:
        return f"one model token repeated ×{len(token_ids)}"
    prompt_words = WORD.findall(normalise(prompt))[-MAX_WORDS:]
    if prompt_words and len(words) >= ECHO_MIN_WORDS:
        common = _lcs(words[:MAX_WORDS], prompt_words)
        if common / min(len(words), MAX_WORDS) >= ECHO_SHARE and common / len(prompt_words) >= ECHO_COVER:
            return "the prompt echoed"
    return None


def _lcs(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two word lists."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
