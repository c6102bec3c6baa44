"""How the training program fails: one exit code per known cause, and the exception that carries it.

The host classifies an attempt by its exit code (tools/run/failures.py reads EXIT_CODES from here),
so the script and the host share one table instead of two copies that could drift.
"""

from __future__ import annotations

# "config" (a bad config, or a model that cannot be loaded) is a mistake in the request, not in the training.
EXIT_CONFIG = 2
EXIT_NAN_LOSS = 3
EXIT_BAD_DATA = 4
EXIT_UNSUPPORTED = 5
EXIT_MISSING_DEPENDENCY = 6
EXIT_OOM = 7
EXIT_CODES: dict[str, int] = {
    "config": EXIT_CONFIG,
    "nan_loss": EXIT_NAN_LOSS,
    "bad_data": EXIT_BAD_DATA,
    "unsupported": EXIT_UNSUPPORTED,
    "missing_dependency": EXIT_MISSING_DEPENDENCY,
    "oom": EXIT_OOM,
}
# oneDNN (torch's CPU kernels) says "could not create a primitive" when it cannot allocate its workspace:
# under a memory limit that is the first allocation of a step to fail as often as torch's own.
OOM_MARKERS = (
    "out of memory",
    "cannot allocate memory",
    "can't allocate memory",
    "bad_alloc",
    "could not create a primitive",
)


class RecipeFailure(Exception):
    """A failure with a known cause: its exit code and the reason written to the metrics file."""

    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code = code
        self.reason = reason


def known_failure(exc: BaseException) -> tuple[int, str, str] | None:
    """Exit code, reason and message for a failure with a known cause; None for anything else."""
    if isinstance(exc, RecipeFailure):
        return exc.code, exc.reason, str(exc)
    if isinstance(exc, ImportError):
        return EXIT_MISSING_DEPENDENCY, "missing_dependency", f"{type(exc).__name__}: {exc}"
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    oom = isinstance(exc, RuntimeError) and any(marker in str(exc).lower() for marker in OOM_MARKERS)
    if isinstance(exc, MemoryError) or oom:
        return EXIT_OOM, "oom", f"out of memory: {type(exc).__name__}: {first_line}"
    return None
