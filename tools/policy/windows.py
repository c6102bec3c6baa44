"""The store's reads and writes for scopes: what each window holds, the brake, refusals and the ledger.

Called inside a store transaction (``tools.policy.db.transaction``), so a sum and the decision that uses it
are one atomic step on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from typing import Any

from tools.core.spec import BudgetPolicy
from tools.policy.db import new_id, thread_money
from tools.policy.records import Brake, HoldState, LedgerRow, SpendKind
from tools.policy.scopes import Scope, ScopeLimits, ScopeMoney, window_start

BRAKE_ID = 1
# What an attempt counts in its window: what it billed once captured, what it holds while it runs.
COMMITTED = "COALESCE(SUM(CASE WHEN state = ? THEN captured_usd ELSE held_usd END), 0) AS committed"


def _committed(db: Any, where: str, params: tuple[Any, ...]) -> float:
    row = db.execute(f"SELECT {COMMITTED} FROM attempts WHERE {where}", (HoldState.CAPTURED.value, *params)).fetchone()
    return float(row["committed"])


def scope_money(
    db: Any, *, thread_id: str, person: str, thread_policy: BudgetPolicy, limits: ScopeLimits, now: float
) -> list[ScopeMoney]:
    """Every limit that applies to a spend by this person in this thread, with what its window holds now."""
    said = [
        ScopeMoney(
            scope=Scope.THREAD,
            limit_usd=thread_policy.max_budget_usd,
            committed_usd=thread_money(db, thread_id).committed_usd,
        )
    ]
    for scope in (Scope.PERSON_DAY, Scope.PERSON_MONTH, Scope.INSTALL_DAY, Scope.INSTALL_MONTH):
        limit = limits.limit(scope)
        if limit is None:
            continue
        since = window_start(scope, now)
        if scope in (Scope.PERSON_DAY, Scope.PERSON_MONTH):
            committed = _committed(db, "person = ? AND started >= ?", (person, since))
        else:
            committed = _committed(db, "started >= ?", (since,))
        said.append(ScopeMoney(scope=scope, person=person, limit_usd=limit, committed_usd=committed))
    return said


def read_brake(db: Any) -> Brake:
    row = db.execute("SELECT * FROM brake WHERE brake_id = ?", (BRAKE_ID,)).fetchone()
    if row is None:
        return Brake()
    return Brake(
        frozen=bool(row["frozen"]),
        stop_running=bool(row["stop_running"]),
        reason=row["reason"],
        decided_by=row["decided_by"],
        changed=row["changed"],
    )


def write_brake(db: Any, brake: Brake) -> None:
    db.execute("DELETE FROM brake WHERE brake_id = ?", (BRAKE_ID,))
    db.execute(
        "INSERT INTO brake (brake_id, frozen, stop_running, reason, decided_by, changed) VALUES (?, ?, ?, ?, ?, ?)",
        (BRAKE_ID, int(brake.frozen), int(brake.stop_running), brake.reason, brake.decided_by, brake.changed),
    )


def record_refusal(db: Any, row: LedgerRow, reason: str) -> None:
    db.execute(
        "INSERT INTO refusals (refusal_id, job_id, thread_id, person, model, gpu, scope, usd, reason, created) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new_id("refusal"),
            row.job_id,
            row.thread_id,
            row.person,
            row.model,
            row.gpu,
            row.scope,
            row.usd,
            reason,
            row.at,
        ),
    )


def ledger_rows(db: Any, since: float) -> list[LedgerRow]:
    """Every attempt started and every refusal made since ``since``, oldest first."""
    rows = [
        LedgerRow(
            kind=SpendKind.CAPTURED if r["state"] == HoldState.CAPTURED.value else SpendKind.HELD,
            usd=float(r["captured_usd"] if r["state"] == HoldState.CAPTURED.value else r["held_usd"]),
            person=r["person"],
            thread_id=r["thread_id"],
            job_id=r["job_id"],
            model=r["model"],
            gpu=r["gpu"],
            at=r["started"],
        )
        for r in db.execute("SELECT * FROM attempts WHERE started >= ? ORDER BY started", (since,)).fetchall()
    ]
    rows += [
        LedgerRow(
            kind=SpendKind.REFUSED,
            usd=float(r["usd"]),
            person=r["person"],
            thread_id=r["thread_id"],
            job_id=r["job_id"],
            model=r["model"],
            gpu=r["gpu"],
            at=r["created"],
            scope=r["scope"],
        )
        for r in db.execute("SELECT * FROM refusals WHERE created >= ? ORDER BY created", (since,)).fetchall()
    ]
    return sorted(rows, key=lambda r: r.at)
