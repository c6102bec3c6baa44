"""Per-run folders and the append-only event log.

Every run keeps its artifacts in ``runs/<run_id>/``; events are JSON lines, written with
flush + fsync so a Ctrl-C or a crash never loses what was already recorded.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.paths import runs_dir
from tools.spec import RunEvent, RunStatus


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
        path = self.root / name
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
        return path

    def record(self, phase: str, status: RunStatus, message: str, data: dict[str, Any] | None = None) -> RunEvent:
        event = RunEvent(phase=phase, status=status, message=message, data=data or {})
        self.append_event(event)
        return event

    def append_event(self, event: RunEvent) -> None:
        line = event.model_dump_json() + "\n"
        with open(self.events_path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def events(self) -> list[RunEvent]:
        if not self.events_path.exists():
            return []
        lines = self.events_path.read_text(encoding="utf-8").splitlines()
        return [RunEvent.model_validate_json(line) for line in lines if line.strip()]
