"""The MLflow calls the end-of-run logging and the live follower share: one run per Aegis run, found by its tag.

Both write into the same MLflow run, so each step is logged once whoever logs it first: a point is sent only when
its key has no value at its step yet. mlflow is heavy, so it is imported inside the functions that use it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

from tools.core.paths import runs_dir
from tools.core.settings import settings
from tools.core.spec import stable_hash

RUN_TAG = "aegis.run_id"
BATCH = 900  # MLflow takes at most 1000 metrics (and 100 params or tags) per call
SMALL_BATCH = 90
DIGEST_CHARS = 36  # MLflow keeps at most 36 characters of a dataset's digest; the profile holds it whole
FIRST_COLUMNS = ("prompt", "reference", "base", "fine_tuned")


class DataInput(BaseModel):
    """A file a run read, as MLflow's dataset inputs show it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    digest: str
    source: str
    context: str
    rows: int | None = None


class OpenedRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mlflow_id: str
    created: bool
    has_params: bool


def quiet() -> None:
    """MLflow and alembic announce a new store on the console; the CLI's output is the person's."""
    for name in ("mlflow", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


def mlflow_uri() -> str:
    return settings().mlflow_tracking_uri or f"sqlite:///{(runs_dir() / 'mlflow.db').resolve()}"


def client_for(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    quiet()
    return MlflowClient(tracking_uri=uri)


def experiment_id(client: Any, uri: str) -> str:
    """The Aegis experiment, created on first use (a process that created it a moment before is not an error)."""
    from mlflow.exceptions import MlflowException

    name = settings().mlflow_experiment
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = (runs_dir() / "mlartifacts").resolve().as_uri() if uri.startswith("sqlite:") else None
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except MlflowException:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def open_run(client: Any, uri: str, *, run_id: str, name: str, started: float) -> OpenedRun:
    """The MLflow run of an Aegis run: found by its tag (its name kept as first set), or created with ``name``."""
    experiment = experiment_id(client, uri)
    found = client.search_runs([experiment], filter_string=f"tags.`{RUN_TAG}` = '{run_id}'", max_results=1)
    if found:
        return OpenedRun(mlflow_id=found[0].info.run_id, created=False, has_params=bool(found[0].data.params))
    run = client.create_run(experiment, start_time=int(started * 1000), run_name=name, tags={RUN_TAG: run_id})
    return OpenedRun(mlflow_id=run.info.run_id, created=True, has_params=False)


def log_params(client: Any, mlflow_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v[:6000]) for k, v in params.items()]
    for i in range(0, len(items), SMALL_BATCH):
        client.log_batch(mlflow_id, params=items[i : i + SMALL_BATCH])


def log_tags(client: Any, mlflow_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    items = [RunTag(k, v[:5000]) for k, v in tags.items()]
    for i in range(0, len(items), SMALL_BATCH):
        client.log_batch(mlflow_id, tags=items[i : i + SMALL_BATCH])


def log_metrics(client: Any, mlflow_id: str, metrics: list[Any]) -> None:
    for i in range(0, len(metrics), BATCH):
        client.log_batch(mlflow_id, metrics=metrics[i : i + BATCH])


def logged_steps(client: Any, mlflow_id: str, keys: Iterable[str]) -> dict[str, set[int]]:
    """The steps each key already has in the run: what a later logging must not send again."""
    return {key: {m.step for m in client.get_metric_history(mlflow_id, key)} for key in set(keys)}


def log_inputs(client: Any, mlflow_id: str, inputs: list[DataInput]) -> None:
    """The data as MLflow dataset inputs (the store keeps one per name and digest, so logging again adds none)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    if not inputs:
        return
    datasets = [
        DatasetInput(
            Dataset(
                name=d.name,
                digest=d.digest[:DIGEST_CHARS],
                source_type="local",
                source=json.dumps({"uri": d.source}),
                profile=json.dumps({"aegis.data_digest": d.digest, "num_rows": d.rows}),
            ),
            tags=[InputTag(MLFLOW_DATASET_CONTEXT, d.context)],
        )
        for d in inputs
    ]
    client.log_inputs(mlflow_id, datasets=datasets)


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            name = "fine_tuned" if key == "trained" else str(key)
            _flat(f"{prefix}.{name}" if prefix else name, inner, out)
    elif value is None or isinstance(value, str | int | float | bool):
        out[prefix] = value
    else:
        out[prefix] = json.dumps(value, default=str)


def table_columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows of generations as columns: nested scores flattened ("scores.base.rouge_l"), "trained" named
    "fine_tuned", whatever keys the rows have, the prompt and the answers first."""
    flat = []
    for row in rows:
        out: dict[str, Any] = {}
        _flat("", row, out)
        flat.append(out)
    names = list(dict.fromkeys(key for out in flat for key in out))
    ordered = [c for c in FIRST_COLUMNS if c in names] + [c for c in names if c not in FIRST_COLUMNS]
    return {c: [out.get(c) for out in flat] for c in ordered}


def table_file(kind: str, rows: list[dict[str, Any]]) -> str:
    """The artifact a table of rows is logged as, named by its content: MLflow appends to a table logged under
    the same name, so the same evaluation logged again is found and skipped, and a new one is a new table."""
    return f"{kind}-{stable_hash(rows)[:8]}.json"


def log_tables(client: Any, mlflow_id: str, tables: dict[str, list[dict[str, Any]]]) -> None:
    """Each table of generations as an MLflow evaluation table, once."""
    if not tables:
        return
    present = {a.path for a in client.list_artifacts(mlflow_id)}
    for artifact, rows in tables.items():
        if rows and artifact not in present:
            client.log_table(mlflow_id, data=table_columns(rows), artifact_file=artifact)
