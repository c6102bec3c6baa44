"""A finished run, logged where people look at training runs: MLflow and TensorBoard.

MLflow gets one run per Aegis run: the spec as parameters, every training step's loss, learning rate, gradient
norm and throughput, the held-out losses the training logged, the eval results before and after, cost and time,
and the report as an artifact. The store is a local SQLite file beside the runs by default
(``sqlite:///RUNS_DIR/mlflow.db``, what ``mlflow ui --backend-store-uri`` opens), or any tracking server set by
AEGIS_MLFLOW_TRACKING_URI. The MLflow run is named for what ran, holds the data as dataset inputs and the eval
generations as evaluation tables. While an attempt trains, the live follower (live_tracking.py) already logs its
steps into the same run; what it logged counts as logged here. TensorBoard event files go in the run's own
``tensorboard/`` folder. LangSmith stays for the agent's turns. mlflow and tensorboard are heavy, so they are
imported inside the functions that use them.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.core.errors import AegisError
from tools.core.runlog import RunFolder, read_lines
from tools.core.settings import settings
from tools.core.spec import EvalResult, ExecutionResult, TrainingSpec
from tools.core.status import JobStatus
from tools.inputs.prepared import PreparedData
from tools.report.mlflow_store import (
    RUN_TAG,
    DataInput,
    client_for,
    log_inputs,
    log_metrics,
    log_params,
    log_tables,
    log_tags,
    logged_steps,
    mlflow_uri,
    open_run,
    table_file,
)
from tools.report.provenance import provenance

TENSORBOARD_DIR = "tensorboard"
STEP_KEYS = {"loss": "train/loss", "lr": "train/learning_rate", "grad_norm": "train/grad_norm"}
STEP_KEYS |= {"tokens_per_s": "train/tokens_per_s", "peak_mem_mb": "train/peak_memory_mb"}
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
    name: str
    outcome: str
    started: float
    params: dict[str, str]
    tags: dict[str, str]
    points: list[StepPoint] = Field(default_factory=list)
    summary: dict[str, float] = Field(default_factory=dict)
    artifacts: list[str] = Field(default_factory=list)
    inputs: list[DataInput] = Field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict, description="Evaluation tables: artifact file -> rows of generations."
    )


class TrackingResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mlflow_run_id: str | None = None
    mlflow_uri: str | None = None
    tensorboard_dir: str | None = None


def redact_uri(uri: str) -> str:
    """A tracking URI with any user:password@ taken out, so it can be shown and recorded."""
    return _USERINFO.sub("***@", uri)


def enabled() -> set[str]:
    wanted = {part.strip().lower() for part in settings().tracking.split(",") if part.strip()}
    if wanted <= {"off", "none", "false", "0"}:
        return set()
    unknown = wanted - {"mlflow", "tensorboard"}
    if unknown:
        raise AegisError(f"AEGIS_TRACKING: {', '.join(sorted(unknown))} is not mlflow, tensorboard or off")
    return wanted


def attempt_prefix(attempt: int) -> str:
    """Keys of a later attempt (a retry, a continue) are its own, so its steps never overwrite the first's."""
    return "" if attempt == 1 else f"attempt{attempt}/"


def record_points(record: dict[str, Any], prefix: str, started: float) -> list[StepPoint]:
    """The tracked values of one metrics.jsonl record: a step's loss, learning rate, gradient norm and throughput,
    or an eval's held-out loss; timed from the attempt's start."""
    if not isinstance(record.get("step"), int):
        return []
    wall, step = started + float(record.get("elapsed_s") or 0.0), record["step"]
    if record.get("type") == "step":
        return [
            StepPoint(key=prefix + key, value=record[name], step=step, wall_time=wall)
            for name, key in STEP_KEYS.items()
            if isinstance(record.get(name), int | float)
        ]
    if record.get("type") == "eval" and isinstance(record.get("eval_loss"), int | float):
        return [StepPoint(key=prefix + "train/heldout_loss", value=record["eval_loss"], step=step, wall_time=wall)]
    return []


def _step_points(attempt_dir: Path, attempt: int, result: ExecutionResult, started: float) -> list[StepPoint]:
    """Each step's values from the attempt's metrics log; the loss curve alone when there is no log."""
    points: list[StepPoint] = []
    prefix = attempt_prefix(attempt)
    for line in read_lines(attempt_dir / "metrics.jsonl"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            points += record_points(record, prefix, started)
    if not points:
        points = [
            StepPoint(key=prefix + "train/loss", value=v, step=s, wall_time=started) for s, v in result.loss_curve
        ]
    return points


def run_name(spec: TrainingSpec, run_id: str) -> str:
    """What ran, as a tracker lists it: "smollm2-135m-instruct · lora · support_train.jsonl · 20261207-1350"."""
    model = re.split(r"[/:]", spec.model_name.rstrip("/"))[-1].lower()
    return f"{model} · {spec.method} · {Path(spec.dataset_path).name} · {run_id[:13]}"


def spec_params(spec: TrainingSpec, data_digest: str | None) -> dict[str, str]:
    """The spec as tracker parameters (plain strings), with the digest of the data it trained on."""
    params = {
        k: json.dumps(v) if isinstance(v, list | dict) else str(v) for k, v in spec.model_dump(mode="json").items()
    }
    params["data_digest"] = data_digest or "unknown"
    return params


def data_inputs(spec: TrainingSpec, data: PreparedData | None) -> list[DataInput]:
    """The training file (and the eval file, when the spec names one) as dataset inputs, with the digest that the
    approval bound (of both files' bytes)."""
    if data is None:
        return []
    found = [
        DataInput(
            name=Path(spec.dataset_path).name,
            digest=data.digest,
            source=data.train_source.path,
            context="training",
            rows=data.train_rows.rows,
        )
    ]
    if spec.eval_dataset_path and data.eval_source is not None:
        rows = data.eval_rows.rows if data.eval_rows is not None else None
        found.append(
            DataInput(
                name=Path(spec.eval_dataset_path).name,
                digest=data.digest,
                source=data.eval_source.path,
                context="eval",
                rows=rows,
            )
        )
    return found


def eval_tables(eval_result: EvalResult | None) -> dict[str, list[dict[str, Any]]]:
    """The eval's generations (task prompts, and the general set when it has one) as evaluation tables."""
    if eval_result is None:
        return {}
    tables = {}
    for kind, field in (("eval_generations", "generations"), ("general_generations", "general")):
        rows = eval_result.model_dump(mode="json").get(field) or []
        if rows:
            tables[table_file(kind, rows)] = rows
    return tables


def collect(
    folder: RunFolder,
    *,
    spec: TrainingSpec,
    attempts: list[ExecutionResult],
    eval_result: EvalResult | None,
    outcome: str,
    data_digest: str | None,
    data: PreparedData | None = None,
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
    where = provenance()
    tags = {
        **run_tags(folder.run_id, spec, outcome),
        "mlflow.source.git.commit": where.commit,
        **{f"version.{k}": v for k, v in where.libraries.items()},
        **(extra_tags or {}),
    }
    artifacts = [str(p) for p in (folder.report_path, folder.loss_curve_path, folder.spec_path) if p.is_file()]
    return TrackedRun(
        run_id=folder.run_id,
        run_dir=str(folder.root),
        name=run_name(spec, folder.run_id),
        outcome=outcome,
        started=started,
        params=spec_params(spec, data_digest),
        tags=tags,
        points=points,
        summary=summary,
        artifacts=artifacts,
        inputs=data_inputs(spec, data),
        tables=eval_tables(eval_result),
    )


def run_tags(run_id: str, spec: TrainingSpec, outcome: str) -> dict[str, str]:
    """The tags that say which Aegis run this is and how it ended (or that it is still running)."""
    return {
        RUN_TAG: run_id,
        "aegis.outcome": outcome,
        "aegis.model": spec.model_name,
        "aegis.method": spec.method,
        "aegis.spec_hash": spec.spec_hash(),
    }


def log_mlflow(run: TrackedRun, uri: str | None = None) -> str:
    """Log the run to MLflow, into the run the live follower opened when there is one; a step already there (logged
    live, or by an earlier logging of a continued run) is never logged twice. Its MLflow id."""
    from mlflow.entities import Metric

    uri = uri or mlflow_uri()
    client = client_for(uri)
    opened = open_run(client, uri, run_id=run.run_id, name=run.name, started=run.started)
    mlflow_id = opened.mlflow_id
    if not opened.has_params:
        log_params(client, mlflow_id, run.params)
    done = logged_steps(client, mlflow_id, (p.key for p in run.points)) if not opened.created else {}
    metrics = [
        Metric(p.key, p.value, int(p.wall_time * 1000), p.step)
        for p in run.points
        if p.step not in done.get(p.key, set())
    ]
    now = int(time.time() * 1000)
    last = max((p.step for p in run.points), default=0)
    log_metrics(client, mlflow_id, metrics + [Metric(k, v, now, last) for k, v in run.summary.items()])
    log_tags(client, mlflow_id, run.tags)
    log_inputs(client, mlflow_id, run.inputs)
    for path in run.artifacts:
        client.log_artifact(mlflow_id, path)
    log_tables(client, mlflow_id, run.tables)
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
        writer.add_text("run", f"{run.name} (run `{run.run_id}`): {run.outcome}", last)
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
