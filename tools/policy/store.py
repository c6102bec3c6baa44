"""The spend authority: approvals, holds and spends in one durable store shared by every process.

Money is handled as payment systems handle it. A grant (an approval) authorizes one attempt of exactly one
spec, estimate and set of data bytes. Starting the attempt consumes the grant and places a hold for the most
the attempt can bill (its time limit x price); its end captures what it really billed and releases the rest.
Every decision is one transaction (SQLite, or PostgreSQL shared by servers) that reads the thread's money and
writes its answer together, so parallel calls, two processes, a cancel then an estimate, or a crash between
two steps can neither start two attempts on one grant nor spend past the hard limit. ``start_attempt`` is the
only code that answers "may this attempt start?"; it takes values.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tools.core.database import Location, as_location, shared_database
from tools.core.errors import GuardRefusal
from tools.core.money import require_price
from tools.core.paths import aegis_home
from tools.core.person import person_or_cli
from tools.core.settings import settings
from tools.core.spec import BudgetPolicy, CostEstimate
from tools.core.status import Decision, GateVerdict
from tools.policy.continuation import Continuation
from tools.policy.db import (
    Db,
    attempt_from,
    grant_from,
    insert_grant,
    new_id,
    read_job,
    require_open,
    thread_money,
    transaction,
)
from tools.policy.gate import FROZEN, GateOutcome, attempt_limits
from tools.policy.grants import insert_attempt, usable_grant
from tools.policy.in_force import InForce
from tools.policy.records import (
    Answered,
    AttemptRow,
    Binding,
    Grant,
    GrantState,
    HoldState,
    JobRecord,
    Lifecycle,
    Money,
    RequestState,
    Ticket,
)
from tools.policy.scopes import AttemptCost, OperatorPolicy, Scope, tightest


def default_store_path() -> Path:
    return (settings().spend_db or aegis_home() / "spend.sqlite").expanduser()


def spend_store() -> SpendStore:
    """The installation's spend store (AEGIS_DATABASE_URL, else the SQLite file): the one way code finds money."""
    return SpendStore(shared_database() or default_store_path())


class SpendStore(InForce, Continuation):
    """Every money decision of every process (of every server, on PostgreSQL), one transaction each."""

    def __init__(
        self,
        path: Location,
        *,
        operator: Callable[[], OperatorPolicy] = OperatorPolicy.from_config,
        clock: Callable[[], float] = time.time,
    ):
        self.path = as_location(path)  # a SQLite file's Path, or a postgresql:// URL
        self.operator = operator  # read at every decision: a limit lowered now applies to what waits
        self.clock = clock

    # -- jobs -----------------------------------------------------------------------------------

    def open_job(
        self, job_id: str, thread_id: str, policy: BudgetPolicy, max_retries: int, *, person: str | None = None
    ) -> JobRecord:
        """Register a job in its thread for a person (default: the CLI's person); a job opened before keeps its
        policy and person."""
        with transaction(self.path) as db:
            db.execute(
                "INSERT INTO jobs (job_id, thread_id, lifecycle, reason, max_budget_usd, soft_threshold_usd, "
                "allow_auto_approve, max_retries, created, person) VALUES (?, ?, ?, '', ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (
                    job_id,
                    thread_id,
                    Lifecycle.OPEN.value,
                    policy.max_budget_usd,
                    policy.soft_threshold_usd,
                    int(policy.allow_auto_approve),
                    max_retries,
                    time.time(),
                    person_or_cli(person),
                ),
            )
            return read_job(db, job_id)

    def job(self, job_id: str) -> JobRecord:
        with transaction(self.path) as db:
            return read_job(db, job_id)

    def require_open(self, job_id: str) -> JobRecord:
        """The job, or GuardRefusal when it was cancelled or closed."""
        job = self.job(job_id)
        require_open(job)
        return job

    def tighten(self, job_id: str, policy: BudgetPolicy) -> JobRecord:
        """A later request in the job may lower its limits; nothing here can raise them."""
        with transaction(self.path) as db:
            job = read_job(db, job_id)
            require_open(job)
            hard = min(job.policy.max_budget_usd, policy.max_budget_usd)
            soft = min(job.policy.soft_threshold_usd, policy.soft_threshold_usd, hard)
            auto = job.policy.allow_auto_approve and policy.allow_auto_approve
            db.execute(
                "UPDATE jobs SET max_budget_usd = ?, soft_threshold_usd = ?, allow_auto_approve = ? WHERE job_id = ?",
                (hard, soft, int(auto), job_id),
            )
            return read_job(db, job_id)

    def close(self, job_id: str, reason: str) -> None:
        """The job ended (its report is written); an open grant it left is void."""
        with transaction(self.path) as db:
            if read_job(db, job_id).lifecycle is Lifecycle.OPEN:
                db.execute(
                    "UPDATE jobs SET lifecycle = ?, reason = ? WHERE job_id = ?",
                    (Lifecycle.CLOSED.value, reason, job_id),
                )
            db.execute(
                "UPDATE grants SET state = ?, reason = 'job closed' WHERE job_id = ? AND state = ?",
                (GrantState.VOID.value, job_id, GrantState.OPEN.value),
            )

    def money(self, thread_id: str) -> Money:
        with transaction(self.path) as db:
            return thread_money(db, thread_id)

    # -- approvals ------------------------------------------------------------------------------

    def gate(self, job_id: str, estimate: CostEstimate, min_hold_usd: float = 0.0) -> GateOutcome:
        """The gate's answer for this estimate against the thread's money now; it grants nothing."""
        with transaction(self.path) as db:
            job = read_job(db, job_id)
            require_open(job)
            return self._evaluate(db, job, estimate, min_hold_usd)

    def grant_by_policy(
        self, job_id: str, binding: Binding, estimate: CostEstimate, min_hold_usd: float = 0.0, *, model: str = ""
    ) -> tuple[GateOutcome, Grant | None]:
        """The gate decides in the transaction that writes its grant: approved → a grant; otherwise none."""
        with transaction(self.path) as db:
            job = read_job(db, job_id)
            require_open(job)
            outcome = self._evaluate(db, job, estimate, min_hold_usd)
            if outcome.outcome != GateVerdict.APPROVED:
                if outcome.outcome == GateVerdict.REFUSED:
                    self._refused(db, job, estimate.estimated_cost_usd, outcome, estimate.cost_breakdown.gpu, model)
                return outcome, None
            grant = insert_grant(db, job_id, binding, estimate.estimated_cost_usd, outcome.decided_by or "", None)
            return outcome, grant

    def open_request(self, job_id: str, binding: Binding, estimate_usd: float, key: str, payload: str) -> str:
        """Put a question to a person on record with what they are shown (``payload``).

        The same job and key (a tool call re-run when its pause is resumed) give the same request, and
        the first payload stays: what is answered is what was shown.
        """
        request_id = f"req-{job_id}-{key}"
        with transaction(self.path) as db:
            require_open(read_job(db, job_id))
            db.execute(
                "INSERT INTO requests (request_id, job_id, spec_hash, estimate_hash, data_digest, estimate_usd, state, "
                "payload, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    request_id,
                    job_id,
                    binding.spec_hash,
                    binding.estimate_hash,
                    binding.data_digest,
                    estimate_usd,
                    RequestState.PENDING.value,
                    payload,
                    time.time(),
                ),
            )
        return request_id

    def request_shown(self, job_id: str, key: str) -> tuple[str, str] | None:
        """(request id, what the person was shown) when this job already asked under this key, else None."""
        request_id = f"req-{job_id}-{key}"
        payload = self.payload(request_id)
        return (request_id, payload) if payload is not None else None

    def payload(self, request_id: str) -> str | None:
        """What the person was shown with this request, as recorded when it was put to them."""
        with transaction(self.path) as db:
            row = db.execute("SELECT payload FROM requests WHERE request_id = ?", (request_id,)).fetchone()
            return row["payload"] if row is not None else None

    def answer(
        self,
        request_id: str,
        *,
        answer_id: str,
        decision: Decision,
        decided_by: str,
        estimate: CostEstimate,
        min_hold_usd: float = 0.0,
        model: str = "",
    ) -> Answered:
        """A person's answer, taken once. Approve makes a grant unless the gate refuses; cancel ends the job.

        The same answer given again (a resumed tool re-running) returns what it did the first time.
        """
        with transaction(self.path) as db:
            row = db.execute("SELECT * FROM requests WHERE request_id = ?", (request_id,)).fetchone()
            if row is None:
                raise GuardRefusal(f"approval request {request_id} does not exist; nothing was approved")
            if row["state"] == RequestState.ANSWERED.value:
                if row["answer_id"] != answer_id:
                    raise GuardRefusal(
                        f"that approval was already answered ({row['decision']} by {row['decided_by']}); "
                        "nothing was done twice"
                    )
                grant = db.execute("SELECT * FROM grants WHERE request_id = ?", (request_id,)).fetchone()
                return Answered(
                    decision=row["decision"],
                    decided_by=row["decided_by"],
                    grant=grant_from(grant) if grant is not None else None,
                )
            job = read_job(db, row["job_id"])
            require_open(job)
            db.execute(
                "UPDATE requests SET state = ?, answer_id = ?, decision = ?, decided_by = ? WHERE request_id = ?",
                (RequestState.ANSWERED.value, answer_id, decision, decided_by, request_id),
            )
            if decision == Decision.CANCEL:
                db.execute(
                    "UPDATE jobs SET lifecycle = ?, reason = ? WHERE job_id = ?",
                    (Lifecycle.CANCELLED.value, f"cancelled by {decided_by}", job.job_id),
                )
                db.execute(
                    "UPDATE grants SET state = ?, reason = 'job cancelled' WHERE job_id = ? AND state = ?",
                    (GrantState.VOID.value, job.job_id, GrantState.OPEN.value),
                )
            if decision != Decision.APPROVE:
                return Answered(decision=decision, decided_by=decided_by)
            binding = Binding(
                spec_hash=row["spec_hash"], estimate_hash=row["estimate_hash"], data_digest=row["data_digest"]
            )
            if estimate.estimate_hash() != binding.estimate_hash:
                raise GuardRefusal("the estimate changed since the question was asked; nothing was approved")
            outcome = self._evaluate(db, job, estimate, min_hold_usd)
            if outcome.outcome == GateVerdict.REFUSED:
                self._refused(db, job, estimate.estimated_cost_usd, outcome, estimate.cost_breakdown.gpu, model)
                return Answered(decision=decision, decided_by=decided_by, gate=outcome)
            grant = insert_grant(db, job.job_id, binding, estimate.estimated_cost_usd, decided_by, request_id)
            return Answered(decision=decision, decided_by=decided_by, grant=grant, gate=outcome)

    # -- attempts -------------------------------------------------------------------------------

    def start_attempt(
        self,
        job_id: str,
        *,
        grant_id: str | None,
        binding: Binding,
        estimated_seconds: float,
        price_usd_per_s: float,
        default_timeout_s: float,
        owner_pid: int,
        model: str = "",
        gpu: str = "",
    ) -> Ticket:
        """May this attempt start? One transaction: consume the grant, number the attempt, hold its money.

        Refused (GuardRefusal, in words) when the job is cancelled or closed, the brake is on, the price cannot be
        stated, there is no grant, the grant was used, voided or given for other bytes, the retry bound is
        reached, or the hold would pass any limit in force now (the thread's, the person's or the installation's,
        per day and per month) together with everything captured and held in its window. A grant found for other
        bytes is voided for good; a refusal for money is kept for the spend report.
        """
        price = require_price(price_usd_per_s, f"job {job_id}'s attempt")
        with transaction(self.path) as db:
            job = read_job(db, job_id)
            require_open(job)
            grant = usable_grant(db, job_id, grant_id)
            changes = binding.changes_from(grant.binding)
            if changes:
                db.execute(
                    "UPDATE grants SET state = ?, reason = ? WHERE grant_id = ?",
                    (GrantState.VOID.value, "; ".join(changes), grant.grant_id),
                )
                refusal = (
                    f"the approval no longer applies: {'; '.join(changes)} since it was given. Estimate and ask for "
                    "approval again; nothing was started"
                )
            else:
                cost = AttemptCost(seconds=estimated_seconds, price=price, default_timeout_s=default_timeout_s)
                started = self._start(db, job, grant.grant_id, cost, owner_pid, model, gpu)
                if isinstance(started, Ticket):
                    return started
                refusal = started
        raise GuardRefusal(refusal)

    def _start(
        self,
        db: Db,
        job: JobRecord,
        grant_id: str,
        cost: AttemptCost,
        owner_pid: int,
        model: str,
        gpu: str,
    ) -> Ticket | str:
        """The attempt's ticket, or the refusal in words (noted for the spend report when it is about money)."""
        count = db.execute("SELECT COUNT(*) AS n FROM attempts WHERE job_id = ?", (job.job_id,)).fetchone()["n"]
        if (ran := count - job.opened_attempts) > job.max_retries:
            since = " since it was continued" if job.opened_attempts else ""
            raise GuardRefusal(
                f"{ran} attempts already ran{since} and max_retries is {job.max_retries}; none may start"
            )
        _, scopes, brake = self._in_force(db, job)
        limiting = tightest(scopes)
        assert limiting is not None  # the thread's limit always applies
        if brake.frozen:
            self._note_refusal(db, job, cost.seconds * cost.price, FROZEN, brake.refusal(), model=model, gpu=gpu)
            return f"{brake.refusal()}; nothing was started"
        try:
            limits = attempt_limits(
                estimated_seconds=cost.seconds,
                price_usd_per_s=cost.price,
                default_timeout_s=cost.default_timeout_s,
                remaining_usd=limiting.left_usd,
                limit_name="the hard limit" if limiting.scope is Scope.THREAD else limiting.name,
            )
        except ValueError as exc:
            said = "" if limiting.scope is Scope.THREAD else f"{limiting.describe()}; "
            refusal = f"over budget: {said}{exc}; nothing was started"
            amount = cost.seconds * cost.price
            self._note_refusal(db, job, amount, limiting.scope.value, refusal, model=model, gpu=gpu)
            return refusal
        ticket = Ticket(
            attempt_id=new_id("attempt"),
            job_id=job.job_id,
            thread_id=job.thread_id,
            attempt=count + 1,
            grant_id=grant_id,
            held_usd=limits.hold_usd,
            timeout_s=limits.timeout_s,
            price_usd_per_s=cost.price,
            started=self.clock(),
        )
        insert_attempt(db, ticket, owner_pid=owner_pid, person=job.person, model=model, gpu=gpu)
        db.execute("UPDATE grants SET state = ? WHERE grant_id = ?", (GrantState.CONSUMED.value, grant_id))
        return ticket

    def capture(self, attempt_id: str, billed_usd: float, outcome: str) -> AttemptRow:
        """Book what the attempt billed and release the rest of its hold; a second capture changes nothing."""
        with transaction(self.path) as db:
            db.execute(
                "UPDATE attempts SET state = ?, captured_usd = ?, outcome = ?, ended = ? "
                "WHERE attempt_id = ? AND state = ?",
                (
                    HoldState.CAPTURED.value,
                    max(0.0, billed_usd),
                    outcome,
                    time.time(),
                    attempt_id,
                    HoldState.HELD.value,
                ),
            )
            row = db.execute("SELECT * FROM attempts WHERE attempt_id = ?", (attempt_id,)).fetchone()
            if row is None:
                raise GuardRefusal(f"attempt {attempt_id} is not in the spend store")
            return attempt_from(row)

    def attempts(self, *, job_id: str | None = None, thread_id: str | None = None) -> list[AttemptRow]:
        with transaction(self.path) as db:
            if job_id is not None:
                rows = db.execute("SELECT * FROM attempts WHERE job_id = ? ORDER BY attempt", (job_id,))
            elif thread_id is not None:
                rows = db.execute("SELECT * FROM attempts WHERE thread_id = ? ORDER BY started", (thread_id,))
            else:
                rows = db.execute("SELECT * FROM attempts ORDER BY started")
            return [attempt_from(row) for row in rows]

    def grants(self, job_id: str) -> list[Grant]:
        with transaction(self.path) as db:
            rows = db.execute("SELECT * FROM grants WHERE job_id = ? ORDER BY created", (job_id,))
            return [grant_from(row) for row in rows]
