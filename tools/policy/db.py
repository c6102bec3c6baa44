"""The spend store's database: schema and migrations, one locked transaction per decision, rows read as records.

The store is a SQLite file on one machine, or PostgreSQL (AEGIS_DATABASE_URL) shared by several servers; the
same SQL and the same migrations run on both (tools/core/database.py speaks to either). On SQLite, WAL lets
readers in other processes go on while one writer decides and ``synchronous=FULL`` makes a committed grant or
spend survive a power cut. Any database failure becomes one StorageError line naming the store (never its
password) and what to do; a decision that could not be written did not happen.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tools.core.database import DATABASE_ERRORS, Db, Location, is_postgres, one_line, shown
from tools.core.database import transaction as locked_transaction
from tools.core.errors import GuardRefusal, StorageError
from tools.core.spec import BudgetPolicy
from tools.policy.records import (
    AttemptRow,
    Binding,
    Claim,
    Grant,
    GrantState,
    HoldState,
    JobRecord,
    Lifecycle,
    Money,
)

STORE_LOCK = "spend-store"  # every decision of every process and server holds it from its first statement
# Each migration runs once, in order, in the transaction that first finds the store behind it; version 1 is the
# store as it was before versions were kept (every statement is idempotent, so an old file upgrades in place).
# DOUBLE PRECISION, TEXT and INTEGER mean the same on SQLite and PostgreSQL: one schema for both.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS jobs (
            job_id TEXT PRIMARY KEY,
            thread_id TEXT NOT NULL,
            lifecycle TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            max_budget_usd DOUBLE PRECISION NOT NULL,
            soft_threshold_usd DOUBLE PRECISION NOT NULL,
            allow_auto_approve INTEGER NOT NULL,
            max_retries INTEGER NOT NULL,
            created DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS jobs_thread ON jobs(thread_id)",
        """CREATE TABLE IF NOT EXISTS requests (
            request_id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs(job_id),
            spec_hash TEXT NOT NULL,
            estimate_hash TEXT NOT NULL,
            data_digest TEXT NOT NULL,
            estimate_usd DOUBLE PRECISION NOT NULL,
            state TEXT NOT NULL,
            answer_id TEXT,
            decision TEXT,
            decided_by TEXT,
            payload TEXT NOT NULL,
            created DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS grants (
            grant_id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs(job_id),
            spec_hash TEXT NOT NULL,
            estimate_hash TEXT NOT NULL,
            data_digest TEXT NOT NULL,
            approved_usd DOUBLE PRECISION NOT NULL,
            decided_by TEXT NOT NULL,
            request_id TEXT UNIQUE,
            state TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            created DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS attempts (
            attempt_id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs(job_id),
            thread_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            grant_id TEXT NOT NULL UNIQUE REFERENCES grants(grant_id),
            held_usd DOUBLE PRECISION NOT NULL,
            captured_usd DOUBLE PRECISION,
            state TEXT NOT NULL,
            outcome TEXT,
            timeout_s DOUBLE PRECISION NOT NULL,
            price_usd_per_s DOUBLE PRECISION NOT NULL,
            owner_pid INTEGER NOT NULL,
            started DOUBLE PRECISION NOT NULL,
            ended DOUBLE PRECISION,
            UNIQUE (job_id, attempt)
        )""",
        "CREATE INDEX IF NOT EXISTS attempts_thread ON attempts(thread_id)",
    ),
    (
        "ALTER TABLE jobs ADD COLUMN person TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE attempts ADD COLUMN person TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE attempts ADD COLUMN model TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE attempts ADD COLUMN gpu TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX IF NOT EXISTS attempts_started ON attempts(started)",
        "CREATE INDEX IF NOT EXISTS attempts_person ON attempts(person, started)",
        """CREATE TABLE IF NOT EXISTS brake (
            brake_id INTEGER PRIMARY KEY,
            frozen INTEGER NOT NULL,
            stop_running INTEGER NOT NULL,
            reason TEXT NOT NULL,
            decided_by TEXT NOT NULL,
            changed DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS refusals (
            refusal_id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL,
            thread_id TEXT NOT NULL,
            person TEXT NOT NULL,
            model TEXT NOT NULL,
            gpu TEXT NOT NULL,
            scope TEXT NOT NULL,
            usd DOUBLE PRECISION NOT NULL,
            reason TEXT NOT NULL,
            created DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS refusals_created ON refusals(created)",
    ),
    (
        "ALTER TABLE attempts ADD COLUMN host TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE jobs ADD COLUMN opened_attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN claim_host TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE jobs ADD COLUMN claim_pid INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN claimed DOUBLE PRECISION NOT NULL DEFAULT 0",
    ),
)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def fault(location: Location, exc: Exception) -> StorageError:
    """A database failure as one line naming the store (without a password) and what to do."""
    text = one_line(location, exc)
    if is_postgres(location):
        return StorageError(
            f"the spend store {shown(location)} cannot be used ({text}); nothing was started or recorded. "
            "Check AEGIS_DATABASE_URL and that the PostgreSQL server is up and accepts this login"
        )
    corrupt = "not a database" in text or "malformed" in text
    if corrupt or (isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)):
        return StorageError(
            f"the spend store {location} is not a readable SQLite database ({text}); nothing may start until "
            f"it is fixed: move it aside (mv {location} {location}.corrupt) and check what ran before, since "
            "the approvals and spends it recorded are then forgotten"
        )
    return StorageError(f"the spend store {location} cannot be used ({text}); nothing was started or recorded")


@contextmanager
def transaction(location: Location) -> Iterator[Db]:
    """One transaction that holds the store's write lock from its first read (SQLite's IMMEDIATE, a PostgreSQL
    advisory lock), so a decision and its write cannot be split by another process or server; the schema is
    brought up to date under that lock, so two servers starting at once do not both migrate."""
    try:
        with locked_transaction(location, STORE_LOCK) as db:
            migrate(db)
            yield db
    except DATABASE_ERRORS as exc:
        raise fault(location, exc) from None


def migrate(db: Db) -> None:
    """Bring the store to the newest schema inside the decision's own transaction (a no-op once it is there)."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT MAX(version) AS version FROM schema_version").fetchone()
    done = int(row["version"] or 0)
    for version, statements in enumerate(MIGRATIONS[done:], start=done + 1):
        for statement in statements:
            db.execute(statement)
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))


def read_job(db: Db, job_id: str) -> JobRecord:
    row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        raise GuardRefusal(f"job {job_id} is not known to the spend store; start a new request")
    return JobRecord(
        job_id=row["job_id"],
        thread_id=row["thread_id"],
        person=row["person"],
        lifecycle=Lifecycle(row["lifecycle"]),
        reason=row["reason"],
        policy=BudgetPolicy(
            max_budget_usd=row["max_budget_usd"],
            soft_threshold_usd=row["soft_threshold_usd"],
            allow_auto_approve=bool(row["allow_auto_approve"]),
        ),
        max_retries=row["max_retries"],
        opened_attempts=row["opened_attempts"],
        claim=Claim(host=row["claim_host"], pid=row["claim_pid"], since=row["claimed"]),
    )


def require_open(job: JobRecord) -> None:
    """Terminal states are terminal: a cancelled or closed job takes no estimate, approval or attempt."""
    if job.lifecycle is not Lifecycle.OPEN:
        raise GuardRefusal(
            f"job {job.job_id} is {job.lifecycle.value} ({job.reason}); nothing in it may be estimated, approved "
            "or run again. Make a new request to start a new job."
        )


def thread_money(db: Db, thread_id: str) -> Money:
    row = db.execute(
        "SELECT COALESCE(SUM(CASE WHEN state = ? THEN captured_usd END), 0) AS captured, "
        "COALESCE(SUM(CASE WHEN state = ? THEN held_usd END), 0) AS held FROM attempts WHERE thread_id = ?",
        (HoldState.CAPTURED.value, HoldState.HELD.value, thread_id),
    ).fetchone()
    return Money(captured_usd=float(row["captured"]), held_usd=float(row["held"]))


def grant_from(row: Any) -> Grant:
    return Grant(
        grant_id=row["grant_id"],
        job_id=row["job_id"],
        binding=Binding(spec_hash=row["spec_hash"], estimate_hash=row["estimate_hash"], data_digest=row["data_digest"]),
        approved_usd=row["approved_usd"],
        decided_by=row["decided_by"],
        state=GrantState(row["state"]),
        created=row["created"],
    )


def attempt_from(row: Any) -> AttemptRow:
    return AttemptRow(
        attempt_id=row["attempt_id"],
        job_id=row["job_id"],
        thread_id=row["thread_id"],
        attempt=row["attempt"],
        grant_id=row["grant_id"],
        held_usd=row["held_usd"],
        captured_usd=row["captured_usd"],
        state=HoldState(row["state"]),
        outcome=row["outcome"],
        owner_pid=row["owner_pid"],
        started=row["started"],
        person=row["person"],
        model=row["model"],
        gpu=row["gpu"],
        host=row["host"],
        price_usd_per_s=row["price_usd_per_s"],
        timeout_s=row["timeout_s"],
    )


def insert_grant(db: Db, job_id: str, binding: Binding, usd: float, decided_by: str, request_id: str | None) -> Grant:
    """A new open grant; any open one of the same job is superseded (one grant in force per job)."""
    db.execute(
        "UPDATE grants SET state = ?, reason = 'superseded by a newer approval' WHERE job_id = ? AND state = ?",
        (GrantState.VOID.value, job_id, GrantState.OPEN.value),
    )
    grant_id = new_id("grant")
    db.execute(
        "INSERT INTO grants (grant_id, job_id, spec_hash, estimate_hash, data_digest, approved_usd, decided_by, "
        "request_id, state, reason, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?)",
        (
            grant_id,
            job_id,
            binding.spec_hash,
            binding.estimate_hash,
            binding.data_digest,
            usd,
            decided_by,
            request_id,
            GrantState.OPEN.value,
            time.time(),
        ),
    )
    return grant_from(db.execute("SELECT * FROM grants WHERE grant_id = ?", (grant_id,)).fetchone())
