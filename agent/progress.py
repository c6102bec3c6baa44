"""Live training progress in the terminal (Rich): step, loss, tokens/s and ETA."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainingProgress:
    """A context manager whose ``update`` is the executors' on_progress callback."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]train[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[tps]} tok/s"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task: Any = None

    def __enter__(self) -> TrainingProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, line: dict[str, Any]) -> None:
        if line.get("type") != "step":
            return
        total = int(line.get("total_steps") or 0) or None
        fields = {
            "loss": f"{float(line.get('loss', float('nan'))):.4f}",
            "tps": f"{float(line.get('tokens_per_s', 0)):.0f}",
        }
        if self.task is None:
            self.task = self.progress.add_task("train", total=total, **fields)
        self.progress.update(self.task, completed=int(line.get("step", 0)), total=total, **fields)
