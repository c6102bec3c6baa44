"""Name what went wrong in a training attempt, from its exit code and its real error text.

The rendered script exits with a code of its own for each failure it recognises (the table is
tools/recipe/exits.py, inlined into the script, so both sides share one definition). A process
killed from outside (timeout, the kernel's OOM killer, a container limit) leaves no such code,
so the log text and the signal decide.
"""

from __future__ import annotations

import re
import signal
from typing import get_args

from tools.core.status import FailureClass
from tools.recipe.exits import EXIT_CODES

# "config" (bad config or a model that cannot be loaded) is a mistake in the request, not in the
# training, so it classifies as "other".
_BY_CODE: dict[int, FailureClass] = {
    EXIT_CODES["nan_loss"]: "nan_loss",
    EXIT_CODES["bad_data"]: "bad_data",
    EXIT_CODES["unsupported"]: "unsupported",
    EXIT_CODES["missing_dependency"]: "missing_dependency",
    EXIT_CODES["oom"]: "oom",
}

_CLASSES: set[str] = set(get_args(FailureClass))
_REASON_TAG = re.compile(r"^AEGIS-ERROR \[(\w+)\]", re.MULTILINE)

# Real error text, most specific first. Matched case-insensitively against the end of the log.
_PATTERNS: list[tuple[FailureClass, re.Pattern[str]]] = [
    (
        "oom",
        re.compile(
            r"out of memory|OutOfMemoryError|\bMemoryError\b|Cannot allocate memory|can't allocate memory"
            r"|std::bad_alloc|\bKilled\b.*\bmemory\b|oom-kill|could not create a primitive",
            re.IGNORECASE,
        ),
    ),
    ("missing_dependency", re.compile(r"ModuleNotFoundError|No module named|\bImportError\b", re.IGNORECASE)),
    (
        "nan_loss",
        re.compile(r"loss (?:became|is) (?:non-finite|nan|inf)|\bnan loss\b|activations overflowed", re.IGNORECASE),
    ),
    (
        "bad_data",
        re.compile(
            r"no usable text column|no usable training example|DatasetGenerationError|JSONDecodeError"
            r"|has no rows|ArrowInvalid",
            re.IGNORECASE,
        ),
    ),
    ("unsupported", re.compile(r"needs a CUDA GPU|not supported on (?:this|the) (?:device|machine)", re.IGNORECASE)),
    ("interrupted", re.compile(r"^KeyboardInterrupt", re.IGNORECASE | re.MULTILINE)),
]

FAILURE_HINTS: dict[FailureClass, str] = {
    "oom": "Ran out of memory: lower micro_batch_size (raise gradient_accumulation_steps to keep the "
    "effective batch), shorten seq_len, turn on gradient checkpointing, or move to lora/qlora.",
    "nan_loss": "Training diverged numerically (NaN/inf loss, or activations overflowed so the gradients "
    "vanished): the learning rate is too high for this model; halve it (or add warmup steps).",
    "timeout": "The run hit its wall-clock limit: allow more time, train fewer steps, or pick a faster GPU.",
    "missing_dependency": "A Python package the script imports is not installed in the training environment; "
    "install it (the error names it) and run again.",
    "bad_data": "The dataset cannot be used: no usable text column, no rows, or no example with an assistant "
    "reply within seq_len; fix the file or set dataset_format.",
    "unsupported": "This machine cannot run the method as asked (qlora needs a CUDA GPU with bitsandbytes); "
    "use lora here or run on a GPU.",
    "interrupted": "The run was stopped by the person (Ctrl-C) before it finished.",
    "other": "The run failed for a reason not in the known classes; read the error line and the log.",
}


def classify_failure(
    exit_code: int | None, log_tail: str, *, timed_out: bool, memory_limited: bool = False
) -> FailureClass:
    """Classify a failed attempt; memory_limited says a memory cap was set, so a SIGKILL means the cap hit."""
    if timed_out:
        return "timeout"
    if exit_code is not None and exit_code in _BY_CODE:
        return _BY_CODE[exit_code]
    if exit_code in (-signal.SIGINT, 128 + signal.SIGINT):
        return "interrupted"
    # The script's own reason line: what decides when a launcher (torchrun) replaced its exit code.
    tagged = _REASON_TAG.findall(log_tail)
    if tagged and tagged[-1] in _CLASSES:
        return tagged[-1]
    for failure, pattern in _PATTERNS:
        if pattern.search(log_tail):
            return failure
    if memory_limited and exit_code in (-signal.SIGKILL, 128 + signal.SIGKILL):
        return "oom"
    return "other"


def error_lines(log_text: str, limit: int = 1) -> str | None:
    """The last meaningful error line(s) of a log: the script's own AEGIS-ERROR line, else an exception line."""
    lines = [line.rstrip() for line in log_text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("AEGIS-ERROR"):
            return line
    exception = re.compile(r"^(?:[\w.]+(?:Error|Exception|Interrupt|Exit)|Killed|Traceback)\b")
    hits = [line for line in lines if exception.match(line) and not line.startswith("Traceback")]
    if hits:
        return "\n".join(hits[-limit:])
    return "\n".join(lines[-limit:]) or None
