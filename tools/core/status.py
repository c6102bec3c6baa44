"""One StrEnum per status vocabulary: what a job, an event, an attempt, a check and the gate can say.

StrEnum members are strings, so records stay plain JSON and a comparison with "succeeded" still holds;
the enum is the one list of the words that exist.
"""

from __future__ import annotations

from enum import StrEnum


class EventStatus(StrEnum):
    """A line of a run's event log."""

    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class AttemptStatus(StrEnum):
    """How one training attempt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class FailureClass(StrEnum):
    """Why an attempt failed, read from its real error; remediation chooses a fix by it."""

    OOM = "oom"
    NAN_LOSS = "nan_loss"
    TIMEOUT = "timeout"
    MISSING_DEPENDENCY = "missing_dependency"
    BAD_DATA = "bad_data"
    UNSUPPORTED = "unsupported"
    INTERRUPTED = "interrupted"
    OTHER = "other"


class Decision(StrEnum):
    """A person's answer at the gate."""

    APPROVE = "approve"
    OPTIMIZE = "optimize"
    CANCEL = "cancel"


class GateVerdict(StrEnum):
    """What the FinOps gate decided."""

    APPROVED = "approved"
    REFUSED = "refused"
    NEEDS_HUMAN = "needs_human"


class CheckStatus(StrEnum):
    """A pre-flight check's result."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


class JobStatus(StrEnum):
    """Where a job stands."""

    PLANNING = "planning"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    RUNNING = "running"
    HEALING = "healing"
    SUCCEEDED = "succeeded"
    EVALS_FAILED = "evals_failed"  # training succeeded and saved a model; its evals failed or could not run
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    REFUSED = "refused"
    CANCELLED = "cancelled"
