"""The runs on this machine: each run's folder read back as a record a person can list, pick and compare.

A run's record is ``runs/<run_id>/job.json`` (the job as it ended, written with its report), its event log and
its spec; a run still training or paused at the gate has less, and says so. Nothing here writes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from tools.core.errors import AegisError
from tools.core.paths import runs_dir
from tools.core.runlog import RunFolder
from tools.core.spec import ExecutionResult, TrainingSpec
from tools.core.status import AttemptStatus, JobStatus
from tools.job.reporting import JOB_FILE
from tools.job.state import JobState

LATEST = ("latest", "last")


class RunSummary(BaseModel):
    """One line of `aegis runs`: what ran, on what, how it ended, what it learned, cost and took."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    when: datetime | None = None
    model: str | None = None
    method: str | None = None
    data: str | None = None
    data_digest: str | None = None
    data_rows: int | None = None
    outcome: str
    loss_before: float | None = None
    loss_after: float | None = None
    cost_usd: float = 0.0
    train_seconds: float = 0.0
    eval_seconds: float | None = None
    thread_id: str | None = None
    has_model: bool = False
    parent_run: str | None = None
    attempts: int = 0
    steps_done: int | None = None
    total_steps: int | None = None
    continued_from_steps: list[int] = []
    continue_saved_usd: float = 0.0


class RunRecord:
    """A run's folder and what it holds: the ended job when there is one, else its spec and events."""

    def __init__(self, root: Path):
        self.folder = RunFolder(root)
        self.job = _read_job(root)
        self.spec = self.job.spec if self.job is not None else _read_spec(self.folder.spec_path)

    @property
    def run_id(self) -> str:
        return self.folder.run_id

    def require_spec(self) -> TrainingSpec:
        if self.spec is None:
            raise AegisError(f"run {self.run_id} has no training spec recorded")
        return self.spec

    def trained_attempt(self) -> tuple[int, ExecutionResult]:
        """The number and result of the attempt whose model the run kept: its last successful one."""
        attempts = self.job.attempts if self.job is not None else []
        for n in range(len(attempts), 0, -1):
            if attempts[n - 1].status == AttemptStatus.SUCCEEDED:
                return n, attempts[n - 1]
        outcome = self.outcome()
        raise AegisError(
            f"run {self.run_id} has no trained model (its outcome: {outcome}); `aegis runs` lists the runs and how "
            "each ended"
        )

    def final_dir(self) -> Path:
        """The trained model's folder (a PEFT adapter, or a full model), found under the run's own folder."""
        n, _ = self.trained_attempt()
        final = self.folder.root / f"attempt-{n}" / "output" / "final"
        if not final.is_dir():
            raise AegisError(f"run {self.run_id}: the trained model is missing from {final}")
        return final

    def has_model(self) -> bool:
        try:
            return self.final_dir().is_dir()
        except AegisError:
            return False

    def outcome(self) -> str:
        if self.job is not None:
            return str(self.job.status)
        return "in progress" if self.folder.events() else "unknown"

    def summary(self) -> RunSummary:
        job, spec = self.job, self.spec
        events = self.folder.events()
        before = after = None
        eval_seconds = None
        data_rows = None
        if job is not None and job.eval_result is not None:
            metrics = job.eval_result.metrics
            before, after = metrics.get("base_eval_loss"), metrics.get("eval_loss")
            eval_seconds = metrics.get("eval_seconds")
        if job is not None and after is None and job.attempts:
            before, after = job.attempts[-1].initial_eval_loss, job.attempts[-1].final_eval_loss
        if job is not None and job.prepared is not None:
            data_rows = job.prepared.data.stats.rows
        return RunSummary(
            run_id=self.run_id,
            when=events[0].timestamp if events else _folder_time(self.folder.root),
            model=spec.model_name if spec else None,
            method=spec.method if spec else None,
            data=spec.dataset_path if spec else None,
            data_digest=job.data_digest if job is not None else None,
            data_rows=data_rows,
            outcome=self.outcome(),
            loss_before=before,
            loss_after=after,
            cost_usd=sum(a.actual_cost_usd for a in job.attempts) if job is not None else 0.0,
            train_seconds=sum(a.duration_s for a in job.attempts) if job is not None else 0.0,
            eval_seconds=eval_seconds,
            thread_id=job.thread if job is not None else None,
            has_model=self.has_model(),
            **_lineage(job),
        )


def _lineage(job: JobState | None) -> dict:
    """The run's parent, its attempts and steps, and where each continue resumed (with what it saved)."""
    if job is None:
        return {}
    last = job.attempts[-1] if job.attempts else None
    return {
        "parent_run": job.warm_start.run_id if job.warm_start else None,
        "attempts": len(job.attempts),
        "steps_done": last.steps_completed if last else None,
        "total_steps": last.total_steps if last else None,
        "continued_from_steps": [point.step for point in job.continued],
        "continue_saved_usd": sum(point.saved_usd for point in job.continued),
    }


def _read_job(root: Path) -> JobState | None:
    path = root / JOB_FILE
    if not path.is_file():
        return None
    try:
        return JobState.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError, ValueError):
        return None


def _read_spec(path: Path) -> TrainingSpec | None:
    try:
        return TrainingSpec.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValidationError, ValueError):
        return None


def _folder_time(root: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(root.stat().st_mtime, UTC)
    except OSError:
        return None


def run_folders(base: Path | None = None) -> list[Path]:
    """The run folders under the runs folder: those with an event log (it also keeps stores and locks)."""
    base = base or runs_dir()
    if not base.is_dir():
        return []
    return [p for p in base.iterdir() if p.is_dir() and (p / "events.jsonl").is_file()]


def list_runs(base: Path | None = None) -> list[RunSummary]:
    """Every run, newest first."""
    runs = [RunRecord(p).summary() for p in run_folders(base)]
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(runs, key=lambda r: (r.when or epoch, r.run_id), reverse=True)


def find_run(ref: str, base: Path | None = None, *, trained: bool = False) -> RunRecord:
    """A run by its id, a unique start of its id, or `latest` (with ``trained``: the newest that kept a model);
    a clear error naming what exists otherwise."""
    ref = ref.strip()
    folders = run_folders(base)
    if ref.lower() in LATEST:
        runs = trained_runs(base) if trained else list_runs(base)
        if not runs:
            kind = "runs that kept a trained model" if trained else "runs"
            raise AegisError(f"there are no {kind} in {base or runs_dir()} yet")
        return RunRecord((base or runs_dir()) / runs[0].run_id)
    exact = [p for p in folders if p.name == ref]
    matches = exact or [p for p in folders if ref and p.name.startswith(ref)]
    if len(matches) == 1:
        return RunRecord(matches[0])
    if not matches:
        raise AegisError(f"no run '{ref}' in {base or runs_dir()}; `aegis runs` lists them (or use `latest`)")
    names = ", ".join(sorted(p.name for p in matches)[:5])
    raise AegisError(f"'{ref}' names {len(matches)} runs ({names}); give more of the id")


def trained_runs(base: Path | None = None) -> list[RunSummary]:
    """The runs that kept a trained model, newest first."""
    return [r for r in list_runs(base) if r.has_model]


def succeeded(summary: RunSummary) -> bool:
    return summary.outcome == JobStatus.SUCCEEDED
