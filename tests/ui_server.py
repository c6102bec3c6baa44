"""The chat server as `aegis ui` starts it, for tests: a free port, state under the test's tmp folder."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.cli.ui import ui_command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the UI server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the UI server did not answer on {url} within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def serve_ui(tmp_path: Path, env: dict[str, str]) -> Iterator[str]:
    """Serve the chat on 127.0.0.1 and a free port with ``env``; stop it, whatever the test did."""
    port = free_port()
    log = tmp_path / "ui-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(ui_command("127.0.0.1", port), env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
