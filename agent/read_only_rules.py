"""The offline planner's reading of a read-only request: help, the runs, a comparison, a preview, a try, a report.

A read-only request is read as a whole sentence of its own kind ("what runs do I have?", "compare the last two
runs", "show me the first 3 rows of data/sample.jsonl", "try run X with: …", "show the last report"), never
picked out of a fine-tune request: what it returns replaces the fine-tune reading of the text. The prompt of a
"try" is taken as written, so nothing in it is read as a field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from agent.request_reading import NUMBER_WORDS

HELP = "help"
LIST_RUNS = "list_runs"
COMPARE_RUNS = "compare_runs"
PREVIEW_DATA = "preview_data"
TRY_RUN = "try_run"
SHOW_REPORT = "show_report"
READ_ONLY_KINDS = (HELP, LIST_RUNS, COMPARE_RUNS, PREVIEW_DATA, TRY_RUN, SHOW_REPORT)
LATEST_RUN = "latest"
PREVIOUS_RUN = "previous"

_POLITE = r"(?:(?:hi|hey|hello|ok|okay|so|and|now)[,!]?\s+)?(?:(?:please|pls|can\s+you|could\s+you|would\s+you)\s+)?"
_HELP = re.compile(
    rf"^{_POLITE}(?:help(?:\s+me)?|\?|what\s+(?:can|do)\s+you\s+do|what\s+can\s+i\s+(?:ask|say|do)(?:\s+here)?"
    r"|how\s+do\s+(?:i|you)\s+(?:use\s+(?:this|you|aegis)|work)|(?:show\s+(?:me\s+)?)?(?:the\s+)?(?:help|commands)"
    r"|what\s+are\s+(?:the|your)\s+commands|who\s+are\s+you|what\s+is\s+this)(?:\s+please)?$",
    re.I,
)
_LIST = re.compile(
    rf"^{_POLITE}(?:(?:what|which)\s+runs\s+(?:do\s+i\s+have|have\s+i\s+(?:got|run|made|done)|are\s+(?:there|here))"
    r"|(?:list|show|give)(?:\s+me)?(?:\s+all)?(?:\s+(?:of\s+)?(?:my|the))?(?:\s+(?:past|previous|recent|old))?\s+runs"
    r"|my\s+runs|what\s+(?:have\s+i|did\s+i)\s+(?:trained|train|run)(?:\s+so\s+far)?)(?:\s+(?:so\s+far|here))?"
    r"(?:\s+please)?$",
    re.I,
)
_REF = (
    r"(?:(?P<{n}latest>(?:the\s+|my\s+)?(?:last|latest|newest|most\s+recent)(?:\s+(?:run|one|training))?)"
    r"|(?P<{n}previous>(?:the\s+)?(?:previous|one\s+before|run\s+before)(?:\s+(?:run|one))?)"
    r"|run\s+(?:id\s+)?`?(?P<{n}id>[A-Za-z0-9][\w\-]{{2,}})`?|`?(?P<{n}bare>\d{{8}}[\w\-]*)`?)"
)
_COMPARE_LAST = re.compile(
    rf"^{_POLITE}compare\s+(?:the\s+|my\s+)?(?:last|latest|two\s+newest|newest)\s+(?:two|2)(?:\s+runs)?$"
    rf"|^{_POLITE}compare\s+(?:the\s+|my\s+)?(?:last|latest)\s+(?:two|2)\s+runs$"
    rf"|^{_POLITE}compare\s+(?:the\s+|my\s+)?(?:two|2)\s+(?:last|latest|newest|most\s+recent)\s+runs$",
    re.I,
)
_COMPARE_TWO = re.compile(
    rf"^{_POLITE}compare\s+{_REF.format(n='a')}\s+(?:and|with|to|vs\.?|versus|against)\s+{_REF.format(n='b')}"
    r"(?:\s+runs?)?$",
    re.I,
)
_DATA_PATH = (
    r"(?P<path>hf:[\w.\-]+(?:/[\w.\-]+)?|(?:\.{0,2}/|~/|/)?(?:[\w.\-]+/)*[\w.\-]+\.(?:jsonl|json|csv|parquet)\b)"
)
_COUNT = r"(?P<count>\d+|" + "|".join(NUMBER_WORDS) + r")"
_PREVIEW = re.compile(
    rf"^{_POLITE}(?:show|preview|display|print|peek\s+(?:at|into)|look\s+(?:at|into)|give|read|head|open|what\s+is\s+in"
    rf"|what['’]s\s+in)(?:\s+me)?(?:\s+(?:the\s+)?(?:first|top)?\s*{_COUNT}?\s*(?:rows?|lines?|examples?|records?))?"
    rf"(?:\s+(?:of|from|in))?\s+(?:the\s+)?(?:data(?:set)?\s+|file\s+)?`?{_DATA_PATH}`?"
    r"(?:\s+(?:with|using)\s+(?:the\s+)?(?:tokenizer\s+of\s+)?(?P<model>[\w:.\-/]+?)(?:['’]s)?(?:\s+tokenizer)?)?$",
    re.I,
)
_TRY = re.compile(
    rf"^{_POLITE}(?:try|ask|test)\s+(?:out\s+)?{_REF.format(n='r')}(?:['’]s\s+model|\s+model)?"
    r"(?:\s*[:\-–]\s*|\s+(?:with|on)\s*[:\-–]?\s*)(?P<prompt>\S.*)$",
    re.I | re.S,
)
_REPORT = re.compile(
    rf"^{_POLITE}(?:show|open|give|read|display|print|see)(?:\s+me)?\s+(?:the\s+)?(?:(?P<last>last|latest|newest)\s+)?"
    rf"report(?:\s+(?:of|for|from)\s+{_REF.format(n='r')})?$"
    rf"|^{_POLITE}(?:show|open|give|display|print)(?:\s+me)?\s+{_REF.format(n='s')}['’]s\s+report$",
    re.I,
)


def _words(text: str) -> str:
    """The request as one line, without the final punctuation people add."""
    return " ".join(text.split()).rstrip(" ?!.")


def _ref(match: re.Match[str], n: str) -> str | None:
    """The run a reference names: 'latest', 'previous', or the id as written; None when the group is absent."""
    if match.group(f"{n}latest"):
        return LATEST_RUN
    if match.group(f"{n}previous"):
        return PREVIOUS_RUN
    return match.group(f"{n}id") or match.group(f"{n}bare")


def _count(text: str | None) -> int | None:
    if not text:
        return None
    return int(text) if text.isdigit() else NUMBER_WORDS[text.lower()]


def _compare(line: str) -> dict[str, Any] | None:
    if _COMPARE_LAST.match(line):
        return {"read_only": COMPARE_RUNS, "runs": [LATEST_RUN, PREVIOUS_RUN]}
    if m := _COMPARE_TWO.match(line):
        return {"read_only": COMPARE_RUNS, "runs": [_ref(m, "a"), _ref(m, "b")]}
    return None


def _preview(line: str) -> dict[str, Any] | None:
    m = _PREVIEW.match(line)
    if m is None:
        return None
    fields: dict[str, Any] = {"read_only": PREVIEW_DATA, "dataset_path": m.group("path")}
    if (rows := _count(m.group("count"))) is not None:
        fields["rows"] = rows
    if m.group("model"):
        fields["model_name"] = m.group("model")
    return fields


def _try(text: str) -> dict[str, Any] | None:
    m = _TRY.match(" ".join(text.split()))  # the prompt keeps its own punctuation
    if m is None:
        return None
    return {"read_only": TRY_RUN, "runs": [_ref(m, "r")], "prompt": m.group("prompt").strip()}


def _report(line: str) -> dict[str, Any] | None:
    m = _REPORT.match(line)
    if m is None:
        return None
    ref = _ref(m, "r") or _ref(m, "s")
    return {"read_only": SHOW_REPORT, "runs": [ref or LATEST_RUN]}


def _simple(line: str) -> dict[str, Any] | None:
    if _HELP.match(line):
        return {"read_only": HELP}
    if _LIST.match(line):
        return {"read_only": LIST_RUNS}
    return None


READERS: tuple[Callable[[str], dict[str, Any] | None], ...] = (_simple, _compare, _preview, _report)


def read_only_request(text: str) -> dict[str, Any] | None:
    """The read-only request a sentence makes (its kind and what it names), or None for any other request."""
    if found := _try(text):
        return found
    line = _words(text)
    for read in READERS:
        if found := read(line):
            return found
    return None
