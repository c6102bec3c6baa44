"""A watchdog per training attempt: when the process that started the training dies, the training dies too.

The parent keeps the write end of a pipe; a small watchdog process, in a session of its own, blocks
on the read end. A normal end writes one byte before closing, and the watchdog leaves quietly. If the
parent is killed (SIGKILL included), the kernel closes the write end, the read returns nothing, and
the watchdog stops the training's process group, then runs the recovery command it was given (which
books the attempt as interrupted and writes the report). No orphan keeps training, or billing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

RELEASE = b"d"
GRACE_S = 5.0


class Watchdog:
    """The parent's side: start one for a process group, release it when the attempt ended normally."""

    def __init__(self, proc: subprocess.Popen[bytes], write_fd: int):
        self.proc = proc
        self.write_fd: int | None = write_fd

    @classmethod
    def start(cls, pgid: int, recovery: Sequence[str], log_path: str | None = None) -> Watchdog:
        """Watch ``pgid``; ``recovery`` is the module and arguments run with ``python -m`` after a kill."""
        read_fd, write_fd = os.pipe()
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tools.run.watchdog", str(read_fd), str(pgid), *recovery],
                pass_fds=(read_fd,),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            os.close(read_fd)
            if log_path:
                log.close()  # type: ignore[union-attr]
        return cls(proc, write_fd)

    def release(self) -> None:
        """The attempt ended here and was booked here: the watchdog leaves without touching anything."""
        if self.write_fd is None:
            return
        try:
            os.write(self.write_fd, RELEASE)
        except OSError:
            pass
        os.close(self.write_fd)
        self.write_fd = None
        try:
            self.proc.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def stop_group(pgid: int, grace_s: float = GRACE_S) -> None:
    """SIGTERM the group, SIGKILL what is left after the grace period."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def main(argv: list[str]) -> int:
    read_fd, pgid, recovery = int(argv[0]), int(argv[1]), argv[2:]
    data = b""
    while True:
        try:
            chunk = os.read(read_fd, 1)
        except InterruptedError:
            continue
        if not chunk:
            break
        data += chunk
    if RELEASE in data:
        return 0
    stop_group(pgid)
    if recovery:
        return subprocess.call([sys.executable, "-m", *recovery])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
