"""A signed-in person's conversation survives a reload: their threads are recorded beside the pending approvals,
and a new tab shows the newest one again (what they said, the agent's replies, the run's outcome) and goes on in it.

Anonymous tabs have no identity that outlives the page, so they start afresh (the past runs stay one click away).
The record is a SQLite file under the runs folder, or a ``ui_threads`` table in the PostgreSQL that
AEGIS_DATABASE_URL names, so a person who reloads onto another server behind the same address finds it there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tools.core.database import (
    DATABASE_ERRORS,
    Db,
    Location,
    as_location,
    is_postgres,
    one_line,
    shared_database,
    shown,
)
from tools.core.database import transaction as locked_transaction
from tools.core.errors import StorageError
from tools.core.paths import runs_dir

SIGNED_IN = "user/"
LOCK = "ui-threads"


def ui_location(location: Path | str | None = None) -> Location:
    """Where the UI's records live: the shared PostgreSQL when AEGIS_DATABASE_URL is set, else a file of its own."""
    return as_location(location) if location else shared_database() or runs_dir() / "ui_threads.sqlite"


@contextmanager
def ui_transaction(location: Location, what: str) -> Iterator[Db]:
    """One locked transaction on the UI's records; a failure is one StorageError line, never its password."""
    try:
        with locked_transaction(location, LOCK) as db:
            yield db
    except DATABASE_ERRORS as exc:
        raise StorageError(f"the UI's {what} {shown(location)} cannot be used ({one_line(location, exc)})") from None


class ThreadIndex:
    """Which threads a signed-in owner (see ``owner_key``) has talked in, newest first."""

    def __init__(self, location: Path | str | None = None):
        self.location = ui_location(location)
        # The SQLite file is the UI's own; in a database the servers share, the table says whose it is.
        self.table = "ui_threads" if is_postgres(self.location) else "threads"
        with self._db() as db:
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (owner TEXT NOT NULL, thread_id TEXT NOT NULL, "
                "updated DOUBLE PRECISION NOT NULL, PRIMARY KEY (owner, thread_id))"
            )

    def _db(self) -> Any:
        return ui_transaction(self.location, "thread index")

    def add(self, owner: str, thread_id: str) -> None:
        if not owner.startswith(SIGNED_IN):
            return
        with self._db() as db:
            db.execute(
                f"INSERT INTO {self.table} (owner, thread_id, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (owner, thread_id) DO UPDATE SET updated = excluded.updated",
                (owner, thread_id, time.time()),
            )

    def latest(self, owner: str) -> str | None:
        if not owner.startswith(SIGNED_IN):
            return None
        with self._db() as db:
            row = db.execute(
                f"SELECT thread_id FROM {self.table} WHERE owner = ? ORDER BY updated DESC LIMIT 1", (owner,)
            ).fetchone()
        return None if row is None else str(row["thread_id"])
