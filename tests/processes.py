"""Helpers for tests about processes: start `aegis` for real, wait for its training, find what it left running."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def aegis_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test's state folders, as the autouse fixture set them, handed to a child process."""
    env = {**os.environ, "AEGIS_RUNS_DIR": str(tmp_path / "runs"), "AEGIS_HOME": str(tmp_path / "aegis-home")}
    env.update(extra)
    return env


def aegis(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`aegis ARGS` to its end, in a process of its own."""
    cmd = [sys.executable, "-m", "agent.cli", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def start_aegis(env: dict[str, str], *args: str, log: Path, stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen:
    out = open(log, "wb")  # noqa: SIM115 - the child writes it; closed when the test's process ends
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", *args], cwd=ROOT, env=env, stdin=stdin, stdout=out, stderr=subprocess.STDOUT
    )


def wait_for(check: Callable[[], object], timeout: float, what: str, poll: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def first_step_written(runs: Path) -> Path | None:
    """The metrics file of an attempt that has trained at least one step."""
    for metrics in runs.glob("*/attempt-*/metrics.jsonl"):
        if '"type": "step"' in metrics.read_text(errors="replace"):
            return metrics
    return None


def training_processes(runs: Path) -> list[psutil.Process]:
    """Every live process running a train.py of this test's runs folder."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if proc.info["status"] != psutil.STATUS_ZOMBIE and any(
                str(runs) in part and part.endswith("train.py") for part in cmdline
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found
