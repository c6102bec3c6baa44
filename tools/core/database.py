"""Where Aegis keeps what its processes share: a SQLite file by default, PostgreSQL when AEGIS_DATABASE_URL names one.

One small layer so the spend store, the UI's thread index and the session's thread lock speak to either the same
way: SQL written once with ``?`` placeholders, rows read by column name, and one transaction per decision that
holds a write lock from its first statement (SQLite's ``BEGIN IMMEDIATE``; on PostgreSQL a transaction-scoped
advisory lock taken first), so a decision and its write cannot be split by another process or another server.
A password in a URL is never shown: messages name the database by ``shown(location)``.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row

from tools.core.errors import StorageError
from tools.core.settings import settings

Location = Path | str
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
BUSY_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10
MAX_IDLE = 4
LOCK_SPACE = 0x41454749  # "AEGI": the first key of every advisory lock Aegis takes, the second names the lock


class Unreachable(Exception):
    """The database could not be opened at all: a bad path or URL, a server that does not answer, a refused login."""


DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error, Unreachable)


class Rows(Protocol):
    """What a statement returns on either database: rows that are read by column name."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Db(Protocol):
    """One open transaction: ``execute(sql, params)`` with ``?`` placeholders, on SQLite or PostgreSQL."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Rows: ...


class PostgresDb:
    """A psycopg connection that takes the SQLite spelling: ``?`` becomes ``%s`` (the SQL holds no literal ? or %)."""

    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Rows:
        if not parameters:
            return self.conn.execute(sql)  # type: ignore[arg-type]
        return self.conn.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(parameters))  # type: ignore[arg-type]


def is_postgres(location: Location) -> bool:
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


def _is_url(location: Location) -> bool:
    return isinstance(location, str) and "://" in location


def as_location(location: Location) -> Location:
    """A postgresql:// URL as it is; anything else is a SQLite file's path."""
    return location if is_postgres(location) else Path(location).expanduser()


def shared_database() -> str | None:
    """AEGIS_DATABASE_URL, checked: the PostgreSQL several servers share, or None for this machine's SQLite files."""
    url = settings().database_url
    if url is not None and not is_postgres(url):
        raise StorageError(
            f"AEGIS_DATABASE_URL must be a postgresql:// URL (it is {shown(url)!r}); unset it to keep SQLite files"
        )
    return url


def _secrets(location: Location) -> set[str]:
    """The URL's password as written and as meant (percent-encoded or not), in its userinfo or its query."""
    if not _is_url(location):
        return set()
    parts = urlsplit(str(location))
    userinfo = parts.netloc.rpartition("@")[0]
    found = {userinfo.partition(":")[2]} if ":" in userinfo else set()
    found |= {value for key, value in parse_qsl(parts.query) if key == "password"}
    return {form for secret in found if secret for form in (secret, unquote(secret))}


def shown(location: Location) -> str:
    """The location as messages may show it: a URL without its password."""
    if not _is_url(location):
        return str(location)
    parts = urlsplit(str(location))
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = f"{userinfo.partition(':')[0]}{at}{hostport}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "password"], safe="/")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def one_line(location: Location, exc: BaseException) -> str:
    """The error's own words on one line, any password in them masked."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for secret in sorted(_secrets(location), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def pg_connect(url: str, **options: Any) -> psycopg.Connection[Any]:
    """A psycopg connection whose rows are dicts (``row["col"]``), as sqlite3.Row reads them."""
    try:
        return psycopg.connect(url, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_S, **options)
    except psycopg.Error as exc:
        raise Unreachable(one_line(url, exc)) from None


def lock_key(name: str) -> int:
    """The second key of the advisory lock called ``name`` (a signed 32-bit number)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big", signed=True)


def try_lock(conn: psycopg.Connection[Any], name: str) -> bool:
    """Take the session-level advisory lock ``name`` now if it is free; held until released or disconnected."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s, %s) AS got", (LOCK_SPACE, lock_key(name))).fetchone()
    return bool(row["got"])


def wait_lock(conn: psycopg.Connection[Any], name: str) -> None:
    """Wait for the session-level advisory lock ``name`` (one server sets a schema up while the others wait)."""
    conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_SPACE, lock_key(name)))


@contextmanager
def exclusive(url: str, name: str) -> Iterator[bool]:
    """Try, once, for the advisory lock ``name`` on a connection of its own held for the block: yields whether it
    was got. PostgreSQL lets it go when the block ends, or when this process dies and its connection drops."""
    conn = pg_connect(url, autocommit=True)
    try:
        yield try_lock(conn, name)
    finally:
        conn.close()


_idle: dict[tuple[int, str], list[psycopg.Connection[Any]]] = {}
_idle_guard = threading.Lock()


def _reused(url: str) -> psycopg.Connection[Any] | None:
    with _idle_guard:
        kept = _idle.get((os.getpid(), url), [])
        return kept.pop() if kept else None


def _keep(url: str, conn: psycopg.Connection[Any]) -> None:
    """A connection whose transaction ended cleanly waits for the next one (a few per database, per process)."""
    if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        with _idle_guard:
            kept = _idle.setdefault((os.getpid(), url), [])
            if len(kept) < MAX_IDLE:
                kept.append(conn)
                return
    conn.close()


def close_idle(url: str | None = None) -> None:
    """Close the connections kept for the next transaction (of one database, or all): a test's database, say,
    that is finished with."""
    with _idle_guard:
        keys = [key for key in _idle if url is None or key[1] == url]
        closing = [conn for key in keys for conn in _idle.pop(key)]
    for conn in closing:
        conn.close()


def _begin(url: str, lock: str) -> psycopg.Connection[Any]:
    """A connection inside a new transaction that holds the lock. A kept connection the server has dropped since
    (a restart) is replaced once, before anything was read or written."""
    conn = _reused(url)
    if conn is not None:
        try:
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, lock_key(lock)))
            return conn
        except psycopg.OperationalError:
            dropped = conn.broken
            conn.close()
            if not dropped:
                raise  # the lock was not had in time: another server holds it, say so
    conn = pg_connect(url)
    try:
        conn.execute(f"SET lock_timeout = '{int(BUSY_TIMEOUT_S)}s'")
        conn.commit()
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_SPACE, lock_key(lock)))
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def _postgres_transaction(url: str, lock: str) -> Iterator[Db]:
    conn = _begin(url, lock)
    try:
        yield PostgresDb(conn)
    except BaseException:
        with suppress(psycopg.Error):
            conn.rollback()
        _keep(url, conn)
        raise
    try:
        conn.commit()
    except BaseException:
        conn.close()
        raise
    _keep(url, conn)


@contextmanager
def _sqlite_transaction(path: Path) -> Iterator[Db]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except (OSError, ValueError, sqlite3.Error) as exc:
        raise Unreachable(one_line(path, exc)) from None
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.close()


@contextmanager
def transaction(location: Location, lock: str) -> Iterator[Db]:
    """One transaction holding the write lock ``lock`` from its first statement; committed when the block ends,
    rolled back when it raises. Raises DATABASE_ERRORS (the caller names its store in the StorageError)."""
    if is_postgres(location):
        with _postgres_transaction(str(location), lock) as db:
            yield db
    else:
        with _sqlite_transaction(Path(location)) as db:
            yield db
