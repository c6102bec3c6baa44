"""Grants and attempts as rows: which grant may start an attempt, and the attempt's row once it holds money."""

from __future__ import annotations

from typing import Any

from tools.core.errors import GuardRefusal
from tools.core.liveness import this_host
from tools.policy.db import grant_from
from tools.policy.records import Grant, GrantState, HoldState, Ticket


def usable_grant(db: Any, job_id: str, grant_id: str | None) -> Grant:
    if not grant_id:
        raise GuardRefusal("no approval: the run needs an approval from the cost gate before it can start")
    row = db.execute("SELECT * FROM grants WHERE grant_id = ? AND job_id = ?", (grant_id, job_id)).fetchone()
    if row is None:
        raise GuardRefusal(f"approval {grant_id} is not one of job {job_id}'s; nothing was started")
    grant = grant_from(row)
    if grant.state is GrantState.CONSUMED:
        used = db.execute("SELECT attempt FROM attempts WHERE grant_id = ?", (grant_id,)).fetchone()
        raise GuardRefusal(
            f"that approval was already used by attempt {used['attempt'] if used else '?'}: one approval starts "
            "one attempt; ask for approval again"
        )
    if grant.state is GrantState.VOID:
        raise GuardRefusal(f"that approval is void ({row['reason']}); ask for approval again")
    return grant


def insert_attempt(db: Any, ticket: Ticket, *, owner_pid: int, person: str, model: str, gpu: str) -> None:
    db.execute(
        "INSERT INTO attempts (attempt_id, job_id, thread_id, attempt, grant_id, held_usd, state, timeout_s, "
        "price_usd_per_s, owner_pid, started, person, model, gpu, host) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ticket.attempt_id,
            ticket.job_id,
            ticket.thread_id,
            ticket.attempt,
            ticket.grant_id,
            ticket.held_usd,
            HoldState.HELD.value,
            ticket.timeout_s,
            ticket.price_usd_per_s,
            owner_pid,
            ticket.started,
            person,
            model,
            gpu,
            this_host(),
        ),
    )
