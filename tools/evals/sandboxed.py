"""Model work in the sandbox: what the model workers (the evals', tools.use's) and the code that starts them share.

A worker runs as ``python -m MODULE ...`` in tools.run.sandbox and is the only process that loads a model, so a
model's own code (trust_remote_code) or a compromised package never runs with the person's files, HOME or network.
The aegis process reads back only data. A worker that fails says why in one ``AEGIS-ERROR`` line of its log.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

from tools.core.errors import AegisError
from tools.run.failures import error_lines

ERROR_TAG = "AEGIS-ERROR"


def worker_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def model_folder(path: str) -> str:
    """The model's real folder, a Hub id's in this machine's Hub cache: the sandbox has no network, only folders.

    Resolved, as every path a worker is given must be: the sandbox binds real folders, not the links to them.
    """
    if not Path(path).exists():
        try:
            path = snapshot_download(path, local_files_only=True)
        except (HFValidationError, LocalEntryNotFoundError):
            return path  # not on this machine: the worker's error names it
    return str(Path(path).resolve())


def failure_reason(exc: BaseException) -> str:
    """An error as a person reads it: Aegis's own in its words, any other with its type."""
    return str(exc) if isinstance(exc, AegisError) else f"{type(exc).__name__}: {exc}"


def say_failure(exc: BaseException) -> None:
    """In a worker: the traceback for the log, then the one line the parent shows."""
    traceback.print_exc()
    print(f"{ERROR_TAG} {failure_reason(exc)}", flush=True)


def worker_failure(what: str, log_text: str, exit_code: int | None) -> AegisError:
    """In the parent: why a worker ended without its result, from the end of its log."""
    line = error_lines(log_text)
    reason = line.removeprefix(ERROR_TAG).strip() if line else f"it exited with code {exit_code} and said nothing"
    return AegisError(f"{what} failed: {reason}")
