"""A finished run, logged where people look at training runs: MLflow and TensorBoard.

MLflow gets one run per Aegis run: the spec as parameters, every training step's loss, learning rate, gradient
norm and throughput, the held-out losses the training logged, the eval results before and after, cost and time,
and the report as an artifact. The store is a local SQLite file beside the runs by default
(``sqlite:///RUNS_DIR/mlflow.db``, what ``mlflow ui --backend-store-uri`` opens), or any tracking server set by
AEGIS_MLFLOW_TRACKING_URI. TensorBoard event files go in the run's own ``tensorboard/`` folder. LangSmith stays
for the agent's turns. mlflow and tensorboard are heavy, so they are imported inside the functions that use them.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.core.errors import AegisError
from tools.core.paths import runs_dir
from tools.core.runlog import RunFolder, read_lines
from tools.core.settings import settings
from tools.core.spec import EvalResult, ExecutionResult, TrainingSpec
from tools.core.status import JobStatus
from tools.report.provenance import provenance

TENSORBOARD_DIR = "tensorboard"
RUN_TAG = "aegis.run_id"
STEP_KEYS = {"loss": "train/loss", "lr": "train/learning_rate", "grad_norm": "train/grad_norm"}
STEP_KEYS |= {"tokens_per_s": "train/tokens_per_s", "peak_mem_mb": "train/peak_memory_mb"}
BATCH = 900  # MLflow takes at most 1000 metrics (and 100 params or tags) per call
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


class StepPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    value: float
    step: int
    wall_time: float


class TrackedRun(BaseModel):
    """What one run gives the trackers: plain values, read from its folder and its job record."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    run_dir: str
    outcome: str
    started: float
    params: dict[str, str]
    tags: dict[str, str]
    points: list[StepPoint] = Field(default_factory=list)
    summary: dict[str, float] = Field(default_factory=dict)
    artifacts: list[str] = Field(default_factory=list)


class TrackingResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mlflow_run_id: str | None = None
    mlflow_uri: str | None = None
    tensorboard_dir: str | None = None


def redact_uri(uri: str) -> str:
    """A tracking URI with any user:password@ taken out, so it can be shown and recorded."""
    return _USERINFO.sub("***@", uri)


def mlflow_uri() -> str:
    return settings().mlflow_tracking_uri or f"sqlite:///{(runs_dir() / 'mlflow.db').resolve()}"


def enabled() -> set[str]:
    wanted = {part.strip().lower() for part in settings().tracking.split(",") if part.strip()}
    if wanted <= {"off", "none", "false", "0"}:
        return set()
    unknown = wanted - {"mlflow", "tensorboard"}
    if unknown:
        raise AegisError(f"AEGIS_TRACKING: {', '.join(sorted(unknown))} is not mlflow, tensorboard or off")
    return wanted


def _step_points(attempt_dir: Path, attempt: int, result: ExecutionResult, started: float) -> list[StepPoint]:
    """Each step's values from the attempt's metrics log; the loss curve alone when there is no log."""
    points: list[StepPoint] = []
    prefix = "" if attempt == 1 else f"attempt{attempt}/"
    for line in read_lines(attempt_dir / "metrics.jsonl"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            continue
        wall = started + float(record.get("elapsed_s") or 0.0)
        if record.get("type") == "step":
            for name, key in STEP_KEYS.items():
                if isinstance(record.get(name), int | float):
                    points.append(StepPoint(key=prefix + key, value=record[name], step=record["step"], wall_time=wall))
        elif record.get("type") == "eval" and isinstance(record.get("eval_loss"), int | float):
            points.append(
                StepPoint(
                    key=prefix + "train/heldout_loss", value=record["eval_loss"], step=record["step"], wall_time=wall
                )
            )
    if not points:
        points = [
            StepPoint(key=prefix + "train/loss", value=v, step=s, wall_time=started) for s, v in result.loss_curve
        ]
    return points


def collect(
    folder: RunFolder,
    *,
    spec: TrainingSpec,
    attempts: list[ExecutionResult],
    eval_result: EvalResult | None,
    outcome: str,
    data_digest: str | None,
    extra_tags: dict[str, str] | None = None,
) -> TrackedRun:
    """The values of a finished run that the trackers log."""
    events = folder.events()
    started = events[0].timestamp.timestamp() if events else time.time()
    points: list[StepPoint] = []
    began = {
        e.data.get("attempt"): e.timestamp.timestamp() for e in events if (e.phase, e.status) == ("train", "started")
    }
    for n, result in enumerate(attempts, start=1):
        points += _step_points(folder.root / f"attempt-{n}", n, result, began.get(n, started))
    summary: dict[str, float] = {
        "cost_usd": sum(a.actual_cost_usd for a in attempts),
        "train_seconds": sum(a.duration_s for a in attempts),
        "attempts": float(len(attempts)),
    }
    if eval_result is not None:
        summary |= {f"evals/{k}": float(v) for k, v in eval_result.metrics.items() if isinstance(v, int | float)}
        summary |= {f"checks/{c.name}": float(c.passed) for c in eval_result.checks}
        summary["evals/passed"] = float(eval_result.passed)
    params = {
        k: json.dumps(v) if isinstance(v, list | dict) else str(v) for k, v in spec.model_dump(mode="json").items()
    }
    params["data_digest"] = data_digest or "unknown"
    where = provenance()
    tags = {
        RUN_TAG: folder.run_id,
        "aegis.outcome": outcome,
        "aegis.model": spec.model_name,
        "aegis.method": spec.method,
        "aegis.spec_hash": spec.spec_hash(),
        "mlflow.runName": folder.run_id,
        "mlflow.source.git.commit": where.commit,
        **{f"version.{k}": v for k, v in where.libraries.items()},
        **(extra_tags or {}),
    }
    artifacts = [str(p) for p in (folder.report_path, folder.loss_curve_path, folder.spec_path) if p.is_file()]
    return TrackedRun(
        run_id=folder.run_id,
        run_dir=str(folder.root),
        outcome=outcome,
        started=started,
        params=params,
        tags=tags,
        points=points,
        summary=summary,
        artifacts=artifacts,
    )


def _quiet() -> None:
    """MLflow and alembic announce a new store on the console; the CLI's output is the person's."""
    for name in ("mlflow", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


def log_mlflow(run: TrackedRun, uri: str | None = None) -> str:
    """Log the run to MLflow (once: a run already there is updated, its steps are not logged twice); its MLflow id."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    _quiet()
    uri = uri or mlflow_uri()
    client = MlflowClient(tracking_uri=uri)
    name = settings().mlflow_experiment
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        location = (runs_dir() / "mlartifacts").resolve().as_uri() if uri.startswith("sqlite:") else None
        experiment_id = client.create_experiment(name, artifact_location=location)
    found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run.run_id}'", max_results=1)
    if found:  # logged before: only the steps since (a continued run's new attempt), never one twice
        mlflow_id = found[0].info.run_id
        logged = found[0].info.end_time or found[0].info.start_time or 0
        metrics: list[Any] = [
            Metric(p.key, p.value, int(p.wall_time * 1000), p.step) for p in run.points if p.wall_time * 1000 > logged
        ]
    else:
        mlflow_id = client.create_run(
            experiment_id, start_time=int(run.started * 1000), run_name=run.run_id
        ).info.run_id
        metrics = [Metric(p.key, p.value, int(p.wall_time * 1000), p.step) for p in run.points]
        params = [Param(k, v[:6000]) for k, v in run.params.items()]
        for i in range(0, len(params), 90):
            client.log_batch(mlflow_id, params=params[i : i + 90])
    now = int(time.time() * 1000)
    last = max((p.step for p in run.points), default=0)
    metrics += [Metric(k, v, now, last) for k, v in run.summary.items()]
    for i in range(0, len(metrics), BATCH):
        client.log_batch(mlflow_id, metrics=metrics[i : i + BATCH])
    tags = [RunTag(k, v[:5000]) for k, v in run.tags.items()]
    for i in range(0, len(tags), 90):
        client.log_batch(mlflow_id, tags=tags[i : i + 90])
    for path in run.artifacts:
        client.log_artifact(mlflow_id, path)
    status = (
        "FINISHED"
        if run.outcome == JobStatus.SUCCEEDED
        else "FAILED"
        if run.outcome != JobStatus.INTERRUPTED
        else "KILLED"
    )
    client.set_terminated(mlflow_id, status=status)
    return mlflow_id


def write_tensorboard(run: TrackedRun) -> Path:
    """TensorBoard event files in the run's tensorboard/ folder (`tensorboard --logdir RUNS_DIR` shows every run)."""
    from torch.utils.tensorboard import SummaryWriter

    folder = Path(run.run_dir) / TENSORBOARD_DIR
    for old in folder.glob("events.out.tfevents.*"):
        old.unlink()  # written again whole, never twice over
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for p in run.points:
            writer.add_scalar(p.key, p.value, global_step=p.step, walltime=p.wall_time)
        last = max((p.step for p in run.points), default=0)
        for key, value in run.summary.items():
            writer.add_scalar(key if "/" in key else f"run/{key}", value, global_step=last)
        writer.add_text("run", f"run `{run.run_id}`: {run.outcome}; model {run.tags.get('aegis.model')}", last)
    finally:
        writer.close()
    return folder


def track(run: TrackedRun) -> TrackingResult:
    """Log to every tracker AEGIS_TRACKING names (both by default); raises on the first that fails."""
    wanted = enabled()
    result = TrackingResult()
    if "tensorboard" in wanted:
        result.tensorboard_dir = str(write_tensorboard(run))
    if "mlflow" in wanted:
        uri = mlflow_uri()
        result.mlflow_run_id = log_mlflow(run, uri)
        result.mlflow_uri = redact_uri(uri)
    return result
