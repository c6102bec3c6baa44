"""Who may use the browser chat: approvals have owners, foreign origins are refused, sign-in beyond loopback.

The fast tests drive the app's functions and its approval callback directly; the slow ones start the real
server as `aegis ui` does (state under tmp, from conftest) and knock on it from outside.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from agent.cli.ui import ui_env
from agent.session import TurnResult
from agent.ui import app as chainlit_app
from agent.ui.access import (
    ORIGINS_VAR,
    SECRET_VAR,
    USERS_VAR,
    allowed_origins,
    check_access,
    hash_password,
    load_users,
    password_ok,
    served_origins,
)
from agent.ui.guard import OriginGuard
from agent.ui.pending import PendingIndex, owner_key
from tests.ui_server import free_port, serve_ui, wait_http
from tools.core.errors import AegisError
from tools.core.paths import PROJECT_ROOT

EVIL = "http://evil.example"
SECRET = "s" * 40
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def no_ui_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's own sign-in settings must not leak into these tests."""
    for var in (USERS_VAR, SECRET_VAR, ORIGINS_VAR):
        monkeypatch.delenv(var, raising=False)


def _users_file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "ui-users"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---- owners ------------------------------------------------------------------------------------------------------


def test_anonymous_tabs_own_apart_and_a_signed_in_person_owns_across_tabs() -> None:
    assert owner_key(None, "tab-1") != owner_key(None, "tab-2")
    assert owner_key("alice", "tab-1") == owner_key("alice", "tab-2")
    # a user cannot be named so as to become some anonymous tab
    assert owner_key("anonymous/tab-1", "x") != owner_key(None, "tab-1")


def test_the_index_names_one_owner_per_thread(tmp_path: Path) -> None:
    index = PendingIndex(tmp_path / "ui.sqlite")
    index.add("t1", "anonymous/tab-1")
    assert index.owner_of("t1") == "anonymous/tab-1" and index.owner_of("t2") is None
    assert index.threads("anonymous/tab-2") == []
    index.discard("t1")
    assert index.owner_of("t1") is None


class FakeAgent:
    """An agent paused at one approval; records the answers it is given."""

    def __init__(self) -> None:
        self.request: Any = SimpleNamespace(spec_hash="hash-1", request_id="request-1")
        self.answers: list[tuple[str, Any, str | None]] = []

    def pending(self, thread_id: str) -> Any:
        return self.request

    def resume(self, thread_id: str, answer: Any, *, spec_hash: str | None = None, on_event: Any = None) -> TurnResult:
        self.answers.append((thread_id, answer, spec_hash))
        self.request = None
        return TurnResult(thread_id=thread_id, replies=[])


async def _press(session_id: str, payload: dict[str, str]) -> list[str]:
    """Press an approval button as the Chainlit session `session_id`; what that session was told."""
    from chainlit.context import init_ws_context
    from chainlit.session import WebsocketSession

    told: list[str] = []

    async def emit(event: str, data: Any) -> None:
        if event in ("new_message", "update_message") and isinstance(data, dict):
            told.append(str(data.get("output", "")))

    async def emit_call(*_: Any) -> None:
        return None

    session = WebsocketSession(session_id, "sock-" + session_id, emit, emit_call, {}, "webapp")
    try:
        init_ws_context(session)
        await chainlit_app.on_approval(chainlit_app.cl.Action(name=chainlit_app.APPROVAL_ACTION, payload=payload))
        await asyncio.gather(*chainlit_app._TASKS)
    finally:
        await session.delete()
    return told


def test_only_the_tab_that_asked_can_answer_whatever_the_payload_says(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = FakeAgent()
    monkeypatch.setattr(chainlit_app, "agent_session", lambda: agent)
    PendingIndex().add("thread-1", owner_key(None, "tab-owner"))
    payload = {"thread_id": "thread-1", "spec_hash": "hash-1", "decision": "approve"}

    told = asyncio.run(_press("tab-other", payload))
    assert agent.answers == [] and any("not yours" in text for text in told)
    assert PendingIndex().owner_of("thread-1") == owner_key(None, "tab-owner")

    told = asyncio.run(_press("tab-owner", payload))
    [(thread_id, answer, spec_hash)] = agent.answers
    assert (thread_id, spec_hash, answer.decision, answer.request_id) == ("thread-1", "hash-1", "approve", "request-1")
    assert answer.decided_by == "person:chainlit" and any("Approve" in text for text in told)
    # answered once: the index forgot it, so pressing again does nothing
    assert PendingIndex().owner_of("thread-1") is None
    assert asyncio.run(_press("tab-owner", payload)) and len(agent.answers) == 1


# ---- origins -----------------------------------------------------------------------------------------------------


def test_only_the_served_origin_is_allowed() -> None:
    assert allowed_origins("127.0.0.1", 8123) == ["http://127.0.0.1:8123", "http://localhost:8123"]
    assert allowed_origins("::1", 8123) == ["http://[::1]:8123", "http://127.0.0.1:8123", "http://localhost:8123"]
    assert allowed_origins("10.0.0.5", 80, "https://aegis.example.com/") == [
        "http://10.0.0.5:80",
        "https://aegis.example.com",
    ]
    with pytest.raises(AegisError, match=ORIGINS_VAR):
        allowed_origins("0.0.0.0", 8000)
    with pytest.raises(AegisError, match="is not an origin"):
        allowed_origins("127.0.0.1", 8000, "*")


def test_the_served_origins_come_from_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(AegisError, match=USERS_VAR):
        served_origins("0.0.0.0", 8000)  # beyond loopback: sign-in first
    users = _users_file(tmp_path, f"alice:{hash_password(PASSWORD)}")
    monkeypatch.setenv(USERS_VAR, str(users))
    monkeypatch.setenv(SECRET_VAR, SECRET)
    with pytest.raises(AegisError, match=ORIGINS_VAR):
        served_origins("0.0.0.0", 8000)  # a wildcard host has no address of its own
    monkeypatch.setenv(ORIGINS_VAR, "https://aegis.example.com")
    assert served_origins("0.0.0.0", 8000) == ["https://aegis.example.com"]


def _call_guard(scope_type: str, origin: str | None) -> list[dict[str, Any]]:
    reached: list[bool] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"origin", origin.encode())] if origin else []
    scope = {"type": scope_type, "method": "GET", "path": "/", "headers": headers, "query_string": b""}
    asyncio.run(OriginGuard(app, frozenset({"http://127.0.0.1:8000"}))(scope, receive, send))
    return [{"type": "reached"}] if reached else sent


def test_the_guard_refuses_foreign_origins_on_http_and_websockets() -> None:
    assert _call_guard("http", EVIL)[0]["status"] == 403
    assert _call_guard("websocket", EVIL) == [{"type": "websocket.close", "code": 1008}]
    assert _call_guard("websocket", "null") == [{"type": "websocket.close", "code": 1008}]
    assert _call_guard("websocket", "http://127.0.0.1:8000") == [{"type": "reached"}]
    assert _call_guard("http", None) == [{"type": "reached"}]  # not a browser page: no cross-site risk


# ---- sign-in -----------------------------------------------------------------------------------------------------


def test_beyond_loopback_without_sign_in_aegis_ui_refuses_in_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main

    assert main(["ui", "--host", "0.0.0.0", "--model", "offline"]) == 2
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert USERS_VAR in err and SECRET_VAR in err


def test_sign_in_must_be_complete_and_never_echoes_secrets(tmp_path: Path) -> None:
    users = _users_file(tmp_path, "# operators", f"alice:{hash_password(PASSWORD)}")
    check_access("127.0.0.1", None, "")
    with pytest.raises(AegisError, match=USERS_VAR):
        check_access("192.168.1.20", None, "")
    with pytest.raises(AegisError, match=SECRET_VAR) as short:
        check_access("0.0.0.0", users, "tiny-secret")
    assert "tiny-secret" not in str(short.value)
    check_access("0.0.0.0", users, SECRET)
    with pytest.raises(AegisError, match="cannot read"):
        check_access("0.0.0.0", tmp_path / "missing", SECRET)
    leaked = _users_file(tmp_path, f"alice:{hash_password(PASSWORD)}", "bob:hunter2-plaintext")
    with pytest.raises(AegisError, match="line 2") as bad:
        load_users(leaked)
    assert "hunter2" not in str(bad.value)


def test_passwords_are_checked_against_scrypt_hashes(tmp_path: Path) -> None:
    users = _users_file(tmp_path, f"alice:{hash_password(PASSWORD)}")
    assert password_ok(users, "alice", PASSWORD)
    assert not password_ok(users, "alice", PASSWORD + "!")
    assert not password_ok(users, "mallory", PASSWORD)
    assert PASSWORD not in users.read_text()


def test_hash_password_asks_twice_and_prints_only_the_hash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from agent.cli import main

    monkeypatch.setattr("getpass.getpass", lambda prompt="": PASSWORD)
    assert main(["ui", "--hash-password"]) == 0
    line = capsys.readouterr().out.strip()
    assert PASSWORD not in line and password_ok(_users_file(tmp_path, f"alice:{line}"), "alice", PASSWORD)
    answers = iter([PASSWORD, PASSWORD + "x"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["ui", "--hash-password"]) == 2
    assert "differ" in capsys.readouterr().err


# ---- the real server ---------------------------------------------------------------------------------------------


def _serve(tmp_path: Path, **env: str):  # noqa: ANN202 - the context manager of serve_ui
    """The app as `aegis ui` starts it, on 127.0.0.1 and a free port."""
    return serve_ui(tmp_path, {**ui_env("offline"), **env})


def _status(url: str, origin: str | None, data: bytes | None = None, **headers: str) -> int:
    request = urllib.request.Request(url, data=data, headers={**headers, **({"Origin": origin} if origin else {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_the_server_refuses_a_foreign_origin_and_serves_its_own(tmp_path: Path) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with _serve(tmp_path) as url:
        polling = f"{url}/ws/socket.io/?EIO=4&transport=polling"
        assert _status(polling, EVIL) == 403
        assert _status(polling, url) == 200
        assert _status(polling, url.replace("127.0.0.1", "localhost")) == 200
        action = json.dumps({"sessionId": "x", "action": {}}).encode()
        assert _status(f"{url}/project/action", EVIL, action, **{"Content-Type": "application/json"}) == 403
        socket_url = url.replace("http://", "ws://") + "/ws/socket.io/?EIO=4&transport=websocket"
        with pytest.raises(InvalidStatus) as refused:
            connect(socket_url, origin=EVIL, open_timeout=10)  # type: ignore[arg-type]
        assert refused.value.response.status_code == 403
        with connect(socket_url, origin=url, open_timeout=10) as ws:  # type: ignore[arg-type]
            assert str(ws.recv(timeout=10)).startswith("0{")  # engine.io's open packet


@pytest.mark.slow
def test_with_users_the_server_asks_for_a_password(tmp_path: Path) -> None:
    users = _users_file(tmp_path, f"alice:{hash_password(PASSWORD)}")
    with _serve(tmp_path, **{USERS_VAR: str(users), SECRET_VAR: SECRET}) as url:
        with urllib.request.urlopen(f"{url}/auth/config", timeout=10) as response:
            assert json.load(response)["requireLogin"] is True

        def login(password: str, origin: str = url) -> int:
            form = urllib.parse.urlencode({"username": "alice", "password": password}).encode()
            return _status(f"{url}/login", origin, form, **{"Content-Type": "application/x-www-form-urlencoded"})

        assert login(PASSWORD) == 200
        assert login("wrong password") == 401
        assert login(PASSWORD, EVIL) == 403
    assert PASSWORD not in (tmp_path / "ui-server.log").read_text()


# ---- no orphans --------------------------------------------------------------------------------------------------


def _servers_on(port: int) -> list[psutil.Process]:
    """Live processes running chainlit with `--port PORT`."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        ports = [cmdline[i + 1] for i, part in enumerate(cmdline[:-1]) if part == "--port"]
        if any("chainlit" in part for part in cmdline) and str(port) in ports:
            found.append(proc)
    return found


@pytest.mark.slow
def test_sigterm_to_aegis_ui_leaves_no_server_behind(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "aegis-ui.log"
    env = {**os.environ, "AEGIS_MODEL": "offline"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "ui", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}", proc, log)
        assert [p.pid for p in _servers_on(port)] == [proc.pid], "aegis ui should be the server, not its parent"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _servers_on(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _servers_on(port) == []
    finally:
        for leftover in _servers_on(port):
            leftover.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
