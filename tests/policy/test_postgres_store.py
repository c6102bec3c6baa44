"""One schema on two databases: the spend store on PostgreSQL when AEGIS_DATABASE_URL is set, SQLite otherwise.

The migrations run on both, once (servers starting together on an empty database do not both migrate), an old
SQLite file made before versions were kept is upgraded in place, and a server that cannot be reached, a login
refused or a URL that does not parse is one line naming the store without its password.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import psycopg
import pytest

from tools.core.database import is_postgres, shown
from tools.core.errors import StorageError
from tools.core.spec import BudgetPolicy
from tools.policy.db import MIGRATIONS
from tools.policy.records import Lifecycle
from tools.policy.store import SpendStore, spend_store

POLICY = BudgetPolicy(max_budget_usd=5.0, soft_threshold_usd=2.0)
SECRET = "s3cret-pw"
UNREACHABLE = f"postgresql://aegis:{SECRET}@127.0.0.1:1/aegis"
# The store as it was before migrations were kept: REAL columns, rows written by position.
V1_SCHEMA = """
CREATE TABLE jobs (job_id TEXT PRIMARY KEY, thread_id TEXT NOT NULL, lifecycle TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '', max_budget_usd REAL NOT NULL, soft_threshold_usd REAL NOT NULL,
    allow_auto_approve INTEGER NOT NULL, max_retries INTEGER NOT NULL, created REAL NOT NULL);
CREATE INDEX jobs_thread ON jobs(thread_id);
CREATE TABLE requests (request_id TEXT PRIMARY KEY, job_id TEXT NOT NULL REFERENCES jobs(job_id),
    spec_hash TEXT NOT NULL, estimate_hash TEXT NOT NULL, data_digest TEXT NOT NULL, estimate_usd REAL NOT NULL,
    state TEXT NOT NULL, answer_id TEXT, decision TEXT, decided_by TEXT, payload TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE grants (grant_id TEXT PRIMARY KEY, job_id TEXT NOT NULL REFERENCES jobs(job_id),
    spec_hash TEXT NOT NULL, estimate_hash TEXT NOT NULL, data_digest TEXT NOT NULL, approved_usd REAL NOT NULL,
    decided_by TEXT NOT NULL, request_id TEXT UNIQUE, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL);
CREATE TABLE attempts (attempt_id TEXT PRIMARY KEY, job_id TEXT NOT NULL REFERENCES jobs(job_id),
    thread_id TEXT NOT NULL, attempt INTEGER NOT NULL, grant_id TEXT NOT NULL UNIQUE REFERENCES grants(grant_id),
    held_usd REAL NOT NULL, captured_usd REAL, state TEXT NOT NULL, outcome TEXT, timeout_s REAL NOT NULL,
    price_usd_per_s REAL NOT NULL, owner_pid INTEGER NOT NULL, started REAL NOT NULL, ended REAL,
    UNIQUE (job_id, attempt));
CREATE INDEX attempts_thread ON attempts(thread_id);
"""


def versions(location: Path | str) -> list[int]:
    if is_postgres(location):
        with psycopg.connect(str(location)) as conn:
            return [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    with sqlite3.connect(location) as db:
        return [row[0] for row in db.execute("SELECT version FROM schema_version ORDER BY version")]


def test_the_same_schema_and_migrations_run_on_both(store_location: Path | str) -> None:
    store = SpendStore(store_location)
    job = store.open_job("j1", "t1", POLICY, max_retries=2)
    assert job.policy.max_budget_usd == 5.0 and job.lifecycle is Lifecycle.OPEN
    assert store.job("j1") == job
    assert versions(store_location) == list(range(1, len(MIGRATIONS) + 1))
    SpendStore(store_location).money("t1")  # a second store (a second server) finds it done
    assert versions(store_location) == list(range(1, len(MIGRATIONS) + 1))


def test_a_store_made_before_migrations_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "spend.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
        db.execute("INSERT INTO jobs VALUES ('j-old', 't-old', 'open', '', 4.0, 1.5, 1, 2, 1700000000.0)")
    store = SpendStore(path)
    old = store.job("j-old")
    assert (old.thread_id, old.policy.max_budget_usd, old.policy.soft_threshold_usd, old.max_retries) == (
        "t-old",
        4.0,
        1.5,
        2,
    )
    assert old.lifecycle is Lifecycle.OPEN and old.person == ""
    assert versions(path) == list(range(1, len(MIGRATIONS) + 1))
    store.close("j-old", "report written")  # written to, after the upgrade, like any other
    assert store.job("j-old").lifecycle is Lifecycle.CLOSED
    assert store.open_job("j-new", "t-old", POLICY, max_retries=1).policy == POLICY


def _open_one(location: str, job_id: str, out: multiprocessing.Queue) -> None:
    try:
        out.put(SpendStore(location).open_job(job_id, "t1", POLICY, max_retries=1).job_id)
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
        out.put(f"{type(exc).__name__}: {exc}")


def test_servers_starting_together_on_an_empty_database_migrate_it_once(postgres_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_open_one, args=(postgres_url, f"j{i}", out)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert sorted(out.get(timeout=5) for _ in procs) == ["j0", "j1", "j2", "j3"]
    assert versions(postgres_url) == list(range(1, len(MIGRATIONS) + 1))


def test_spend_store_uses_the_shared_database_when_it_is_set(postgres_url: str, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("AEGIS_SPEND_DB", str(tmp_path / "never.sqlite"))
    monkeypatch.setenv("AEGIS_DATABASE_URL", postgres_url)
    assert spend_store().path == postgres_url
    spend_store().open_job("j1", "t1", POLICY, max_retries=1)
    assert SpendStore(postgres_url).job("j1").thread_id == "t1" and not (tmp_path / "never.sqlite").exists()
    monkeypatch.delenv("AEGIS_DATABASE_URL")
    assert spend_store().path == tmp_path / "never.sqlite"  # SQLite stays the default


@pytest.mark.parametrize(
    "url",
    [
        UNREACHABLE,  # nothing listens
        f"postgresql://aegis:{SECRET}@127.0.0.1:notaport/aegis",  # does not parse
        f"postgresql://aegis@/aegis?host=/nonexistent&password={SECRET}",  # no such socket
    ],
)
def test_a_database_that_cannot_be_used_is_one_line_without_the_password(url: str) -> None:
    with pytest.raises(StorageError) as caught:
        SpendStore(url).open_job("j1", "t1", POLICY, max_retries=1)
    message = str(caught.value)
    assert "\n" not in message and SECRET not in message
    assert message.startswith(f"the spend store {shown(url)} cannot be used") and "AEGIS_DATABASE_URL" in message


def test_a_login_the_server_refuses_is_one_line(postgres_url: str) -> None:
    refused = postgres_url.replace("postgresql://postgres@/", f"postgresql://nobody:{SECRET}@/")
    with pytest.raises(StorageError, match="cannot be used") as caught:
        SpendStore(refused).money("t1")
    assert "\n" not in str(caught.value) and SECRET not in str(caught.value) and "nobody" in str(caught.value)


def test_a_url_that_is_not_postgresql_is_refused_in_one_line(monkeypatch) -> None:
    monkeypatch.setenv("AEGIS_DATABASE_URL", f"mysql://aegis:{SECRET}@db/aegis")
    with pytest.raises(StorageError, match="must be a postgresql:// URL") as caught:
        spend_store()
    assert SECRET not in str(caught.value)


def test_shown_drops_the_password_and_keeps_the_rest() -> None:
    assert shown(f"postgresql://aegis:{SECRET}@db.internal:5433/aegis?sslmode=require") == (
        "postgresql://aegis@db.internal:5433/aegis?sslmode=require"
    )
    assert shown(f"postgres://db/aegis?password={SECRET}&host=/run/pg") == "postgres://db/aegis?host=/run/pg"
    assert shown(Path("/tmp/spend.sqlite")) == "/tmp/spend.sqlite"


def test_connections_the_server_dropped_are_replaced_before_anything_is_decided(postgres_url: str) -> None:
    store = SpendStore(postgres_url)
    store.open_job("j1", "t1", POLICY, max_retries=1)  # its connection is kept for the next decision
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # what a server restart does to them
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    assert store.job("j1").thread_id == "t1"
