"""Whose approval is whose: the server's record of which owner may answer each paused thread.

Chainlit keeps no threads without a data layer; this small table beside the checkpointer does.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tools.core.paths import runs_dir


def owner_key(user_identifier: str | None, session_id: str) -> str:
    """Whose an approval is: a signed-in person's, in all their tabs; else the one session (tab) that asked.

    Without sign-in every browser is alike, so only the Chainlit session tells one client from another.
    """
    return f"user/{user_identifier}" if user_identifier else f"anonymous/{session_id}"


class PendingIndex:
    """Which owner (see `owner_key`) a paused thread belongs to."""

    def __init__(self, path: Path | None = None):
        self.path = path or runs_dir() / "ui_threads.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS pending (thread_id TEXT PRIMARY KEY, owner TEXT, updated REAL)")

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(str(self.path), timeout=10)

    def add(self, thread_id: str, owner: str) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO pending VALUES (?, ?, ?)", (thread_id, owner, time.time()))

    def discard(self, thread_id: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM pending WHERE thread_id = ?", (thread_id,))

    def threads(self, owner: str) -> list[str]:
        with self._db() as db:
            rows = db.execute("SELECT thread_id FROM pending WHERE owner = ? ORDER BY updated DESC", (owner,))
            return [row[0] for row in rows]

    def owner_of(self, thread_id: str) -> str | None:
        with self._db() as db:
            row = db.execute("SELECT owner FROM pending WHERE thread_id = ?", (thread_id,)).fetchone()
            return None if row is None else str(row[0])
