"""The spend store's SQLite file: schema, one IMMEDIATE transaction per decision, rows read as records.

WAL lets readers in other processes go on while one writer decides; ``synchronous=FULL`` makes a
committed grant or spend survive a power cut. Any SQLite failure becomes one StorageError line
naming the file and what to do; a decision that could not be written did not happen.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.core.errors import GuardRefusal, StorageError
from tools.core.spec import BudgetPolicy
from tools.policy.records import (
    AttemptRow,
    Binding,
    Grant,
    GrantState,
    HoldState,
    JobRecord,
    Lifecycle,
    Money,
)

BUSY_TIMEOUT_S = 30.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL,
    lifecycle TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    max_budget_usd REAL NOT NULL,
    soft_threshold_usd REAL NOT NULL,
    allow_auto_approve INTEGER NOT NULL,
    max_retries INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_thread ON jobs(thread_id);
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs(job_id),
    spec_hash TEXT NOT NULL,
    estimate_hash TEXT NOT NULL,
    data_digest TEXT NOT NULL,
    estimate_usd REAL NOT NULL,
    state TEXT NOT NULL,
    answer_id TEXT,
    decision TEXT,
    decided_by TEXT,
    payload TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    grant_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs(job_id),
    spec_hash TEXT NOT NULL,
    estimate_hash TEXT NOT NULL,
    data_digest TEXT NOT NULL,
    approved_usd REAL NOT NULL,
    decided_by TEXT NOT NULL,
    request_id TEXT UNIQUE,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    attempt_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs(job_id),
    thread_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    grant_id TEXT NOT NULL UNIQUE REFERENCES grants(grant_id),
    held_usd REAL NOT NULL,
    captured_usd REAL,
    state TEXT NOT NULL,
    outcome TEXT,
    timeout_s REAL NOT NULL,
    price_usd_per_s REAL NOT NULL,
    owner_pid INTEGER NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    UNIQUE (job_id, attempt)
);
CREATE INDEX IF NOT EXISTS attempts_thread ON attempts(thread_id);
"""


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def fault(path: Path, exc: Exception) -> StorageError:
    text = str(exc) or type(exc).__name__
    corrupt = "not a database" in text or "malformed" in text
    if corrupt or (isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)):
        return StorageError(
            f"the spend store {path} is not a readable SQLite database ({text}); nothing may start until "
            f"it is fixed: move it aside (mv {path} {path}.corrupt) and check what ran before, since "
            "the approvals and spends it recorded are then forgotten"
        )
    return StorageError(f"the spend store {path} cannot be used ({text}); nothing was started or recorded")


@contextmanager
def transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """One IMMEDIATE transaction: it holds the write lock from its first read, so a decision and its
    write cannot be split by another process."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except (OSError, ValueError, sqlite3.Error) as exc:
        raise fault(path, exc) from None
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise fault(path, exc) from None
    finally:
        db.close()


def read_job(db: sqlite3.Connection, job_id: str) -> JobRecord:
    row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        raise GuardRefusal(f"job {job_id} is not known to the spend store; start a new request")
    return JobRecord(
        job_id=row["job_id"],
        thread_id=row["thread_id"],
        lifecycle=Lifecycle(row["lifecycle"]),
        reason=row["reason"],
        policy=BudgetPolicy(
            max_budget_usd=row["max_budget_usd"],
            soft_threshold_usd=row["soft_threshold_usd"],
            allow_auto_approve=bool(row["allow_auto_approve"]),
        ),
        max_retries=row["max_retries"],
    )


def require_open(job: JobRecord) -> None:
    """Terminal states are terminal: a cancelled or closed job takes no estimate, approval or attempt."""
    if job.lifecycle is not Lifecycle.OPEN:
        raise GuardRefusal(
            f"job {job.job_id} is {job.lifecycle.value} ({job.reason}); nothing in it may be estimated, approved "
            "or run again. Make a new request to start a new job."
        )


def thread_money(db: sqlite3.Connection, thread_id: str) -> Money:
    row = db.execute(
        "SELECT COALESCE(SUM(CASE WHEN state = ? THEN captured_usd END), 0) AS captured, "
        "COALESCE(SUM(CASE WHEN state = ? THEN held_usd END), 0) AS held FROM attempts WHERE thread_id = ?",
        (HoldState.CAPTURED.value, HoldState.HELD.value, thread_id),
    ).fetchone()
    return Money(captured_usd=float(row["captured"]), held_usd=float(row["held"]))


def grant_from(row: sqlite3.Row) -> Grant:
    return Grant(
        grant_id=row["grant_id"],
        job_id=row["job_id"],
        binding=Binding(spec_hash=row["spec_hash"], estimate_hash=row["estimate_hash"], data_digest=row["data_digest"]),
        approved_usd=row["approved_usd"],
        decided_by=row["decided_by"],
        state=GrantState(row["state"]),
        created=row["created"],
    )


def attempt_from(row: sqlite3.Row) -> AttemptRow:
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
    )


def insert_grant(
    db: sqlite3.Connection, job_id: str, binding: Binding, usd: float, decided_by: str, request_id: str | None
) -> Grant:
    """A new open grant; any open one of the same job is superseded (one grant in force per job)."""
    db.execute(
        "UPDATE grants SET state = ?, reason = 'superseded by a newer approval' WHERE job_id = ? AND state = ?",
        (GrantState.VOID.value, job_id, GrantState.OPEN.value),
    )
    grant_id = new_id("grant")
    db.execute(
        "INSERT INTO grants VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?)",
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
