"""Failure classification from exit codes and real error text (messages copied from real runs)."""

from __future__ import annotations

import signal

import pytest

from tools.core.status import FailureClass
from tools.run.failures import EXIT_CODES, FAILURE_HINTS, classify_failure, error_lines

CPU_OOM = (
    "RuntimeError: [enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 15204352 bytes. Error code 12 (Cannot allocate memory)"
)
CUDA_OOM = (
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
    "22.07 GiB of which 1.01 GiB is free."
)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (EXIT_CODES["nan_loss"], "nan_loss"),
        (EXIT_CODES["bad_data"], "bad_data"),
        (EXIT_CODES["unsupported"], "unsupported"),
        (EXIT_CODES["missing_dependency"], "missing_dependency"),
        (EXIT_CODES["oom"], "oom"),
    ],
)
def test_script_exit_codes_name_their_class(code: int, expected: str) -> None:
    assert classify_failure(code, "", timed_out=False) == expected


def test_exit_codes_are_distinct_and_avoid_generic_ones() -> None:
    codes = list(EXIT_CODES.values())
    assert len(set(codes)) == len(codes)
    assert not {0, 1} & set(codes)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CPU_OOM, "oom"),
        (CUDA_OOM, "oom"),
        ("MemoryError", "oom"),
        ("terminate called after throwing an instance of 'std::bad_alloc'\n  what():  std::bad_alloc", "oom"),
        ("ModuleNotFoundError: No module named 'bitsandbytes'", "missing_dependency"),
        ("ImportError: cannot import name 'foo' from 'bar'", "missing_dependency"),
        ("ValueError: no usable text column (found ['foo']); expected 'text'", "bad_data"),
        ("datasets.exceptions.DatasetGenerationError: An error occurred while generating the dataset", "bad_data"),
        ("Traceback (most recent call last):\nKeyboardInterrupt", "interrupted"),
        ("RuntimeError: shape mismatch", "other"),
    ],
)
def test_error_text_decides_without_a_known_exit_code(text: str, expected: str) -> None:
    assert classify_failure(1, f"some log line\n{text}\n", timed_out=False) == expected


def test_the_script_reason_line_decides_under_a_launcher() -> None:
    # torchrun exits 1 whatever its workers returned; the worker's own reason line still names the class.
    log = "AEGIS-ERROR [nan_loss]: loss became non-finite (nan) at step 2\nChildFailedError: train.py FAILED\n"
    assert classify_failure(1, log, timed_out=False) == "nan_loss"
    assert classify_failure(1, "AEGIS-ERROR [model_not_found]: cannot load the model", timed_out=False) == "other"


def test_timeout_wins_over_everything() -> None:
    assert classify_failure(-signal.SIGTERM, CPU_OOM, timed_out=True) == "timeout"
    assert classify_failure(None, "", timed_out=True) == "timeout"


def test_sigkill_is_oom_only_under_a_memory_limit() -> None:
    assert classify_failure(-signal.SIGKILL, "", timed_out=False, memory_limited=True) == "oom"
    assert classify_failure(137, "", timed_out=False, memory_limited=True) == "oom"
    assert classify_failure(-signal.SIGKILL, "", timed_out=False) == "other"


def test_sigint_is_interrupted() -> None:
    assert classify_failure(-signal.SIGINT, "", timed_out=False) == "interrupted"
    assert classify_failure(130, "", timed_out=False) == "interrupted"


def test_every_class_has_a_hint() -> None:
    assert set(FAILURE_HINTS) == set(FailureClass)
    assert all(hint.strip() for hint in FAILURE_HINTS.values())


def test_error_lines_prefers_the_script_reason_then_the_last_exception() -> None:
    log = "loading\nAEGIS-ERROR [bad_data]: dataset 'x.jsonl': no usable text column\nmore noise\n"
    assert error_lines(log) == "AEGIS-ERROR [bad_data]: dataset 'x.jsonl': no usable text column"
    trace = (
        'Traceback (most recent call last):\n  File "train.py", line 3, in <module>\n'
        "    raise RuntimeError('boom')\nRuntimeError: boom\n"
    )
    assert error_lines("start\n" + trace) == "RuntimeError: boom"
    assert error_lines("just output\nlast words\n") == "last words"
    assert error_lines("") is None
