"""What contains a run: the words an estimate, an approval and a report use for it.

A value, so the estimate (tools/plan) and the approval (tools/policy) can carry it without knowing how a
backend isolates; the backends in tools/run say which one they give.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Isolation(StrEnum):
    """How a run is kept from the person's files and the network."""

    BUBBLEWRAP = "bubblewrap"
    MODAL_CONTAINER = "modal container"
    NONE = "none"


class IsolationFacts(BaseModel):
    """The isolation a backend gives, and in a few words what it means (or why there is none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Isolation
    detail: str

    @property
    def isolated(self) -> bool:
        return self.kind is not Isolation.NONE

    def describe(self) -> str:
        return f"isolation: {self.kind} ({self.detail})"
