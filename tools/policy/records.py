"""The spend store's records: what a job, a grant, a hold and a person's answer are, as values."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from tools.core.spec import BudgetPolicy
from tools.core.status import Decision
from tools.policy.gate import DECIDER_PATTERN, GateOutcome


class Lifecycle(StrEnum):
    OPEN = "open"
    CANCELLED = "cancelled"
    CLOSED = "closed"


class GrantState(StrEnum):
    OPEN = "open"
    CONSUMED = "consumed"
    VOID = "void"


class RequestState(StrEnum):
    PENDING = "pending"
    ANSWERED = "answered"


class HoldState(StrEnum):
    HELD = "held"
    CAPTURED = "captured"


class Binding(BaseModel):
    """What an approval is for: this spec, this estimate, these data bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec_hash: str = Field(min_length=1)
    estimate_hash: str = Field(min_length=1)
    data_digest: str = Field(min_length=1)

    def changes_from(self, approved: Binding) -> list[str]:
        """What differs from the approved binding, in words."""
        said = []
        if self.spec_hash != approved.spec_hash:
            said.append("the spec changed")
        if self.estimate_hash != approved.estimate_hash:
            said.append("the estimate changed")
        if self.data_digest != approved.data_digest:
            said.append(
                f"the training data changed (approved {approved.data_digest[:12]}, now {self.data_digest[:12]})"
            )
        return said


class Money(BaseModel):
    """A thread's money: billed and captured, and reserved by attempts still running."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    captured_usd: float = 0.0
    held_usd: float = 0.0

    @property
    def committed_usd(self) -> float:
        return self.captured_usd + self.held_usd


class Claim(BaseModel):
    """Which process continues a job (``aegis continue``): while it lives, no other may."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = ""
    pid: int = 0
    since: float = 0.0


class JobRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str
    thread_id: str
    person: str = Field(description="Whose limits the job's spending counts against ('' in stores older than persons).")
    lifecycle: Lifecycle
    reason: str
    policy: BudgetPolicy
    max_retries: int
    opened_attempts: int = Field(
        default=0, description="Attempts it had when last continued: the retry bound counts from there."
    )
    claim: Claim = Field(default_factory=Claim)


class Grant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    grant_id: str
    job_id: str
    binding: Binding
    approved_usd: float
    decided_by: str = Field(pattern=DECIDER_PATTERN)
    state: GrantState
    created: float


class _Attempt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    attempt_id: str
    job_id: str
    thread_id: str
    attempt: int
    grant_id: str
    held_usd: float
    started: float


class Ticket(_Attempt):
    """A started attempt: its number, the grant it consumed, its hold and the time limit the hold pays for."""

    timeout_s: float
    price_usd_per_s: float


class AttemptRow(_Attempt):
    """An attempt as the store keeps it: held while it runs, then captured with what it billed."""

    captured_usd: float | None
    state: HoldState
    outcome: str | None
    owner_pid: int
    person: str = ""
    model: str = ""
    gpu: str = ""
    host: str = Field(default="", description="The machine whose process owns it ('' in stores older than hosts).")
    price_usd_per_s: float = 0.0
    timeout_s: float = 0.0


class Answered(BaseModel):
    """A person's answer as the store took it: a grant when they approved."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: Decision
    decided_by: str
    grant: Grant | None = None
    gate: GateOutcome | None = None


class Brake(BaseModel):
    """The operator's brake: while frozen no attempt starts anywhere; stop_running also stops those running."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frozen: bool = False
    stop_running: bool = False
    reason: str = ""
    decided_by: str = ""
    changed: float | None = None

    def refusal(self) -> str:
        return (
            f"spending is frozen by the operator ({self.decided_by}: {self.reason or 'no reason given'}); nothing new "
            "may start until the operator runs `aegis spend unfreeze`"
        )


class SpendKind(StrEnum):
    CAPTURED = "captured"
    HELD = "held"
    REFUSED = "refused"


class LedgerRow(BaseModel):
    """One amount in the store, labelled for a spend report: billed, held by a running attempt, or refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SpendKind
    usd: float
    person: str
    thread_id: str
    job_id: str
    model: str
    gpu: str
    at: float = Field(description="When the attempt started, or the refusal was made (seconds since the epoch).")
    scope: str = Field(default="", description="For a refusal: the scope that refused.")
