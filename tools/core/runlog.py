"""Per-run folders and the append-only event log.

Every run keeps its artifacts in ``runs/<run_id>/``. Events are JSON lines, each written whole with one
append and fsync'd, so a Ctrl-C or a crash never loses what was already recorded; a write that fails
(a full disk) is cut back off, so the log stays parseable, and is one StorageError line. Readers skip a
torn or foreign line with a warning instead of failing on it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tools.core.errors import StorageError
from tools.core.paths import runs_dir
from tools.core.spec import RunEvent
from tools.core.status import EventStatus

log = logging.getLogger("aegis.runlog")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


class RunFolder:
    """The folder of one run: spec, config, script, log, metrics, events, report, loss curve."""

    def __init__(self, root: Path):
        self.root = root

    @classmethod
    def create(cls, run_id: str | None = None, base: Path | None = None) -> RunFolder:
        root = (base or runs_dir()) / (run_id or new_run_id())
        root.mkdir(parents=True, exist_ok=True)
        return cls(root)

    @property
    def run_id(self) -> str:
        return self.root.name

    def attempt_dir(self, attempt: int) -> Path:
        """Each training attempt gets its own working folder (config, script, log, metrics, output)."""
        path = self.root / f"attempt-{attempt}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def spec_path(self) -> Path:
        return self.root / "spec.json"

    @property
    def events_path(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def report_path(self) -> Path:
        return self.root / "REPORT.md"

    @property
    def loss_curve_path(self) -> Path:
        return self.root / "loss_curve.png"

    def write_json(self, name: str, payload: Any) -> Path:
        """Write whole or not at all: a crash mid-write leaves the previous file, never half of a new one."""
        return write_file_atomic(self.root / name, json.dumps(payload, indent=2, default=str) + "\n")

    def record(self, phase: str, status: EventStatus, message: str, data: dict[str, Any] | None = None) -> RunEvent:
        event = RunEvent(phase=phase, status=status, message=message, data=data or {})
        self.append_event(event)
        return event

    def append_event(self, event: RunEvent) -> None:
        append_line(self.events_path, event.model_dump_json())

    def events(self) -> list[RunEvent]:
        events = []
        for number, line in enumerate(read_lines(self.events_path), start=1):
            try:
                events.append(RunEvent.model_validate_json(line))
            except ValidationError:
                log.warning("skipped line %d of %s: not a whole event (a torn write?)", number, self.events_path)
        return events


def append_line(path: Path, line: str) -> None:
    """Append one line with a single write and fsync; on failure cut the file back to where it was."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot open {path} to record to it: {exc.strerror or exc}") from None
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            raise StorageError(
                f"cannot write to {path}: {exc.strerror or exc}; free some disk space. Nothing already recorded "
                "was lost"
            ) from None
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[str]:
    """The non-empty lines of a log, or none when it does not exist; bytes that are not UTF-8 are replaced."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return [line for line in text.splitlines() if line.strip()]


def write_cache_entry(path: Path, text: str) -> None:
    """A cache entry, whole or not at all; a full disk only means it is measured again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomic(path, text)
    except (OSError, StorageError):
        pass


def write_file_atomic(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}; free some disk space") from None
    return path
