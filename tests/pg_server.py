"""A real PostgreSQL server for the tests, from the distribution's package, started once per test session.

initdb and postgres refuse to run as root, so as root they run as the unprivileged ``postgres`` user the Debian
package creates (setpriv, no fork: the process started is the server), in a temp folder that user owns. The server
listens only on a Unix socket in that folder (no TCP port to collide with), trusts local connections and skips
fsync: it holds test data only. Each test gets a database of its own (``new_database``).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

SERVER_USER = "postgres"
START_TIMEOUT_S = 60.0
FAST = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200", "listen_addresses=")
MISSING = (
    "PostgreSQL is not installed here (no initdb in /usr/lib/postgresql/*/bin or on PATH): "
    "run `make postgres` (apt-get install postgresql), or set AEGIS_TEST_PG_BIN to its bin folder"
)


def postgres_bin() -> Path | None:
    """The folder holding initdb and postgres: AEGIS_TEST_PG_BIN, Debian's versioned folder, or PATH."""
    named = os.environ.get("AEGIS_TEST_PG_BIN")
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    on_path = shutil.which("initdb")
    candidates = [Path(p) for p in reversed(found)] + ([Path(on_path).resolve()] if on_path else [])
    candidates = [Path(named) / "initdb"] if named else candidates
    return next((c.parent for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


class PostgresServer:
    """One postgres process in a folder of its own; ``stop`` ends it and removes the folder."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.as_user: list[str] = []
        owner = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise RuntimeError(f"postgres refuses root and there is no {SERVER_USER!r} user to run it as") from None
            self.as_user = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--init-groups", "--"]
        self.folder = Path(tempfile.mkdtemp(prefix="aegis-pg-"))
        if owner is not None:
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.names = itertools.count(1)
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SERVER_USER}@/{database}?host={self.folder}"

    def start(self) -> PostgresServer:
        initdb = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", SERVER_USER, "--auth=trust", "--no-sync"]
        done = subprocess.run(
            [*self.as_user, *initdb, "-E", "UTF8", "--locale=C"], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"initdb failed: {' '.join((done.stderr or done.stdout).split())[-500:]}")
        options = [arg for setting in FAST for arg in ("-c", setting)]
        server = [str(self.bindir / "postgres"), "-D", str(self.data), "-k", str(self.folder), *options]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([*self.as_user, *server], stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        tail = " ".join(self.log.read_text(errors="replace").split())[-500:]
        self.stop()
        raise RuntimeError(f"postgres did not start: {tail}")

    def new_database(self) -> str:
        """A fresh, empty database; its URL. Tests never share one, so none sees another's rows or locks."""
        name = f"test_{os.getpid()}_{next(self.names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # immediate shutdown: the data is thrown away next
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
