"""Where the agent's threads are checkpointed: a SQLite file under the runs folder, or the PostgreSQL several
servers share (AEGIS_DATABASE_URL), so a run paused for approval on one server is answered from any other.

Either way the store is checked when it is opened: a file that is not SQLite, a server that refuses the login or
a URL that does not parse is one StorageError line saying what to do, never a traceback (and never a password).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.sqlite import SqliteSaver
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from tools.core.database import (
    CONNECT_TIMEOUT_S,
    DATABASE_ERRORS,
    Location,
    is_postgres,
    one_line,
    pg_connect,
    shown,
    wait_lock,
)
from tools.core.errors import StorageError

POOL_SIZE = 4  # parallel tool calls of one turn, and the UI's tabs, each take a connection for one step


@dataclass
class Checkpoints:
    """An open thread store: LangGraph's checkpointer, and how to let go of its connections."""

    saver: BaseCheckpointSaver
    location: Location
    close: Callable[[], None]


def unreadable(location: Location, exc: BaseException) -> StorageError:
    """A thread store that failed under a read or a write, in one line."""
    if is_postgres(location):
        return StorageError(
            f"the thread store {shown(location)} cannot be used ({one_line(location, exc)}); check "
            "AEGIS_DATABASE_URL and that the PostgreSQL server is up and accepts this login"
        )
    return StorageError(f"the thread store {location} cannot be read ({exc}); move it aside to start afresh")


def open_sqlite(path: Path, serde: SerializerProtocol) -> Checkpoints:
    """The thread store as a SQLite file, checked: a file that is not SQLite says what to do."""
    try:
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StorageError(
            f"the thread store {path} is not a readable SQLite database ({exc}); move it aside "
            f"(mv {path} {path}.corrupt) to start afresh: paused threads in it are then lost, runs and reports are not"
        ) from None
    return Checkpoints(SqliteSaver(conn, serde=serde), path, conn.close)


def open_postgres(url: str, serde: SerializerProtocol) -> Checkpoints:
    """LangGraph's PostgreSQL checkpointer on a small pool (a server restart costs one failed step, not the
    process). Its tables are set up once, under an advisory lock, so servers starting together do not race."""
    try:
        with pg_connect(url, autocommit=True, prepare_threshold=0) as conn:
            wait_lock(conn, "checkpoints-setup")
            PostgresSaver(conn, serde=serde).setup()
    except DATABASE_ERRORS as exc:
        raise unreadable(url, exc) from None
    options = {
        "autocommit": True,
        "prepare_threshold": 0,
        "row_factory": dict_row,
        "connect_timeout": CONNECT_TIMEOUT_S,
    }
    pool = ConnectionPool(
        url, kwargs=options, min_size=1, max_size=POOL_SIZE, check=ConnectionPool.check_connection, open=True
    )
    return Checkpoints(PostgresSaver(pool, serde=serde), url, pool.close)


def open_checkpoints(location: Location, serde: SerializerProtocol) -> Checkpoints:
    """The thread store at ``location``: a postgresql:// URL, or a SQLite file's path."""
    if is_postgres(location):
        return open_postgres(str(location), serde)
    return open_sqlite(Path(location), serde)
