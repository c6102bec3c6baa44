"""Whether a process that once owned something still runs: on this machine, and the same process, not a newer
one that reuses its pid."""

from __future__ import annotations

import socket

import psutil

PID_CLOCK_SLACK_S = 1.0  # a process's start time is rounded; one started this long after is still the same


def this_host() -> str:
    return socket.gethostname()


def alive(pid: int | None, since: float) -> bool:
    """pid runs (not a zombie) and started no later than ``since``: a reused pid of a newer process is not it."""
    if not pid or pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= since + PID_CLOCK_SLACK_S
    except psutil.Error:
        return False
