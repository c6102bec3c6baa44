"""Whose approval is whose: the server's record of which owner may answer each paused thread.

Chainlit keeps no threads without a data layer; this small table beside the UI's thread index does.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from agent.ui.history import ui_location, ui_transaction
from tools.core.database import is_postgres


def owner_key(user_identifier: str | None, session_id: str) -> str:
    """Whose an approval is: a signed-in person's, in all their tabs; else the one session (tab) that asked.

    Without sign-in every browser is alike, so only the Chainlit session tells one client from another.
    """
    return f"user/{user_identifier}" if user_identifier else f"anonymous/{session_id}"


class PendingIndex:
    """Which owner (see `owner_key`) a paused thread belongs to: on the shared PostgreSQL when AEGIS_DATABASE_URL
    is set, so an approval asked on one server is answered on another by its owner only."""

    def __init__(self, location: Path | str | None = None):
        self.location = ui_location(location)
        self.table = "ui_pending" if is_postgres(self.location) else "pending"
        with self._db() as db:
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (thread_id TEXT PRIMARY KEY, owner TEXT, "
                "updated DOUBLE PRECISION)"
            )

    def _db(self) -> Any:
        return ui_transaction(self.location, "approval owners")

    def add(self, thread_id: str, owner: str) -> None:
        with self._db() as db:
            db.execute(
                f"INSERT INTO {self.table} (thread_id, owner, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (thread_id) DO UPDATE SET owner = excluded.owner, updated = excluded.updated",
                (thread_id, owner, time.time()),
            )

    def discard(self, thread_id: str) -> None:
        with self._db() as db:
            db.execute(f"DELETE FROM {self.table} WHERE thread_id = ?", (thread_id,))

    def threads(self, owner: str) -> list[str]:
        with self._db() as db:
            rows = db.execute(f"SELECT thread_id FROM {self.table} WHERE owner = ? ORDER BY updated DESC", (owner,))
            return [row["thread_id"] for row in rows]

    def owner_of(self, thread_id: str) -> str | None:
        with self._db() as db:
            row = db.execute(f"SELECT owner FROM {self.table} WHERE thread_id = ?", (thread_id,)).fetchone()
            return None if row is None else str(row["owner"])
