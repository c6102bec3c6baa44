"""A tiny error hierarchy: an AegisError is shown to the person as it is, never as a traceback.

``exit_code`` is what the CLI exits with: 2 for input a person can fix (the default), 1 for a
store or disk that failed under a run.
"""

from __future__ import annotations


class AegisError(Exception):
    """An error whose message is meant for the person: it names what is wrong and how to fix it."""

    exit_code = 2


class SpecError(AegisError):
    """Every problem found in a spec, reported together so one edit can fix them all."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class DataError(AegisError):
    """The dataset cannot be used as given (missing, empty, outside the allowed folders, no text)."""


class ModelError(AegisError):
    """The model cannot be resolved or its config cannot be read offline."""


class GuardRefusal(AegisError):
    """A guard inside a tool said no (no approval, over budget, retries exhausted)."""


class StorageError(AegisError):
    """A file Aegis keeps state in cannot be read or written (full disk, corrupt database); nothing was lost."""

    exit_code = 1
