"""The money rules in force at a decision and the operator's levers over them: the policy as the operator sets it
now, every scope's window, the brake, refusals kept for the report, and the ledger a spend report reads.

A part of ``SpendStore`` (tools/policy/store.py): every method here runs in one store transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.core.spec import BudgetPolicy, CostEstimate
from tools.policy.db import transaction
from tools.policy.gate import GateOutcome, evaluate_gate
from tools.policy.records import Brake, JobRecord, LedgerRow, SpendKind
from tools.policy.scopes import OperatorPolicy, ScopeMoney, stricter
from tools.policy.windows import ledger_rows, read_brake, record_refusal, scope_money, write_brake


class InForce:
    """What a decision applies (read fresh in its own transaction) and what the operator may do about it."""

    path: Path
    operator: Callable[[], OperatorPolicy]
    clock: Callable[[], float]

    def _in_force(self, db: Any, job: JobRecord) -> tuple[BudgetPolicy, list[ScopeMoney], Brake]:
        """The policy in force now (the job's, lowered by the operator's now), every limit with what its window
        holds, and the brake: read in the decision's own transaction."""
        operator = self.operator()
        policy = stricter(job.policy, operator.thread)
        scopes = scope_money(
            db,
            thread_id=job.thread_id,
            person=job.person,
            thread_policy=policy,
            limits=operator.scopes,
            now=self.clock(),
        )
        return policy, scopes, read_brake(db)

    def _evaluate(self, db: Any, job: JobRecord, estimate: CostEstimate, min_hold_usd: float) -> GateOutcome:
        policy, scopes, brake = self._in_force(db, job)
        spent = scopes[0].committed_usd
        frozen = brake.refusal() if brake.frozen else None
        return evaluate_gate(estimate, policy, spent, min_hold_usd, scopes=scopes, frozen=frozen)

    def _refused(self, db: Any, job: JobRecord, amount: float, outcome: GateOutcome, gpu: str, model: str) -> None:
        """Note money a limit or the brake refused, for the spend report (a refusal for fit or code is not money)."""
        if outcome.refused_by:
            self._note_refusal(db, job, amount, outcome.refused_by, outcome.reason, model=model, gpu=gpu)

    def _note_refusal(
        self, db: Any, job: JobRecord, amount: float, scope: str, reason: str, *, model: str, gpu: str
    ) -> None:
        row = LedgerRow(
            kind=SpendKind.REFUSED,
            usd=amount,
            person=job.person,
            thread_id=job.thread_id,
            job_id=job.job_id,
            model=model,
            gpu=gpu,
            at=self.clock(),
            scope=scope,
        )
        record_refusal(db, row, reason)

    # -- the operator's view and brake ----------------------------------------------------------------

    def brake(self) -> Brake:
        with transaction(self.path) as db:
            return read_brake(db)

    def freeze(self, decided_by: str, reason: str, *, stop_running: bool = False) -> Brake:
        """Refuse every new attempt, from every process sharing this store, until ``unfreeze``."""
        brake = Brake(
            frozen=True, stop_running=stop_running, reason=reason, decided_by=decided_by, changed=self.clock()
        )
        with transaction(self.path) as db:
            write_brake(db, brake)
        return brake

    def unfreeze(self, decided_by: str) -> Brake:
        brake = Brake(frozen=False, reason="unfrozen", decided_by=decided_by, changed=self.clock())
        with transaction(self.path) as db:
            write_brake(db, brake)
        return brake

    def ledger(self, since: float = 0.0) -> list[LedgerRow]:
        """What was billed, is held and was refused since ``since``: what a spend report adds up."""
        with transaction(self.path) as db:
            return ledger_rows(db, since)

    def limits_now(self, person: str, thread_id: str = "") -> list[ScopeMoney]:
        """Every limit that applies to this person (and thread) now, with what each window holds."""
        operator = self.operator()
        with transaction(self.path) as db:
            said = scope_money(
                db,
                thread_id=thread_id,
                person=person,
                thread_policy=operator.thread,
                limits=operator.scopes,
                now=self.clock(),
            )
        return said if thread_id else said[1:]
