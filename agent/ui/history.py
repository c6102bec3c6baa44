"""A signed-in person's conversation survives a reload: their threads are recorded beside the pending approvals,
and a new tab shows the newest one again (what they said, the agent's replies, the run's outcome) and goes on in it.

Anonymous tabs have no identity that outlives the page, so they start afresh (the past runs stay one click away).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tools.core.paths import runs_dir

SIGNED_IN = "user/"


class ThreadIndex:
    """Which threads a signed-in owner (see ``owner_key``) has talked in, newest first."""

    def __init__(self, path: Path | None = None):
        self.path = path or runs_dir() / "ui_threads.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS threads (owner TEXT, thread_id TEXT, updated REAL, "
                "PRIMARY KEY (owner, thread_id))"
            )

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(str(self.path), timeout=10)

    def add(self, owner: str, thread_id: str) -> None:
        if not owner.startswith(SIGNED_IN):
            return
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO threads VALUES (?, ?, ?)", (owner, thread_id, time.time()))

    def latest(self, owner: str) -> str | None:
        if not owner.startswith(SIGNED_IN):
            return None
        with self._db() as db:
            row = db.execute(
                "SELECT thread_id FROM threads WHERE owner = ? ORDER BY updated DESC LIMIT 1", (owner,)
            ).fetchone()
        return None if row is None else str(row[0])
