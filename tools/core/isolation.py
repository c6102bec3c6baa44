"""What contains a run: the words an estimate, an approval and a report use for it.

A value, so the estimate (tools/plan) and the approval (tools/policy) can carry it without knowing how a
backend isolates; the backends in tools/run say which one they give.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


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


class CodeFile(BaseModel):
    """A file of a model's own code (trust_remote_code): what a person approves running, by name and content."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    sha256: str


class Placement(BaseModel):
    """Where an estimate runs and what runs there: part of the estimate, so an approval binds it too."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str | None = Field(default=None, description="The backend that runs it; None when none here can.")
    hint: str | None = Field(default=None, description="Why no backend here can run it, and what to set up.")
    isolation: IsolationFacts | None = None
    trust_remote_code: bool = Field(default=False, description="The run executes the model's own code.")
    remote_code: list[CodeFile] = Field(default_factory=list, description="The model's own code files, by digest.")

    @property
    def isolated(self) -> bool:
        return self.isolation is not None and self.isolation.isolated

    def where(self) -> str:
        """'runs on local, isolation: …', or why it cannot run here."""
        if self.backend is None:
            return f"not runnable here: {self.hint}"
        shown = self.isolation.describe() if self.isolation else "isolation: unknown"
        return f"runs on {self.backend}, {shown}"

    def code_files(self, digits: int = 12) -> str:
        return ", ".join(f"{f.name} (sha256 {f.sha256[:digits]})" for f in self.remote_code) or "no .py file found"
