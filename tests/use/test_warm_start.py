"""`aegis train SPEC --from RUN`: a new run starts from a finished run's trained adapter, where its parent ended,
and names its parent in `aegis runs`, `aegis runs compare`, its report, its model card and MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from tools.core.runlog import RunFolder
from tools.job.state import JobState
from tools.report.tracking import RUN_TAG

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SPEC = """method: lora
model_name: local:tiny-llama
dataset_path: {data}
dataset_format: instruction
num_epochs: 10
max_steps: {steps}
micro_batch_size: 4
learning_rate: {lr}
warmup_steps: {warmup}
seq_len: 128
eval_split: 0.1
seed: 42
precision: fp32
target_gpu: cpu
"""


def train(tmp_path: Path, name: str, *extra: str, steps: int, lr: float, warmup: int = 0) -> JobState:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(SPEC.format(data=ROOT / "data" / "sample.jsonl", steps=steps, lr=lr, warmup=warmup))
    before = {p.name for p in (tmp_path / "runs").glob("*")} if (tmp_path / "runs").is_dir() else set()
    assert main(["train", str(spec), "--yes", *extra]) == 0
    [new] = [p for p in (tmp_path / "runs").glob("*") if p.name not in before and (p / "job.json").is_file()]
    return JobState.model_validate_json((new / "job.json").read_text())


def test_a_run_started_from_a_finished_runs_adapter_begins_where_it_ended(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AEGIS_TRACKING", "mlflow")
    for name, value in {"AEGIS_EVAL_ROWS": "8", "AEGIS_EVAL_GENERATIONS": "2", "AEGIS_EVAL_NEW_TOKENS": "16"}.items():
        monkeypatch.setenv(name, value)
    parent = train(tmp_path, "parent", steps=30, lr=1e-2)
    child = train(tmp_path, "child", "--from", parent.run_id, steps=6, lr=1e-3, warmup=2)

    parent_curve, child_curve = parent.attempts[-1].loss_curve, child.attempts[-1].loss_curve
    base_first, parent_last, child_first = parent_curve[0][1], parent_curve[-1][1], child_curve[0][1]
    assert abs(child_first - parent_last) < 0.15 * abs(base_first - parent_last)  # not the base model's loss
    assert child.warm_start is not None and child.warm_start.run_id == parent.run_id

    capsys.readouterr()
    assert main(["runs", "--json"]) == 0
    listed = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed[child.run_id]["parent_run"] == parent.run_id and listed[parent.run_id]["parent_run"] is None
    assert (
        main(
            [
                "runs",
                "compare",
                parent.run_id,
                child.run_id,
            ]
        )
        == 0
    )
    compared = capsys.readouterr().out
    assert "started from run" in compared and parent.run_id in compared
    assert f"Started from run `{parent.run_id}`" in RunFolder(Path(child.run_dir)).report_path.read_text()
    assert_mlflow_lineage(tmp_path / "runs", parent.run_id, child.run_id)
    export = tmp_path / "export"
    assert main(["export", child.run_id, "--out", str(export)]) == 0
    assert parent.run_id in (export / "README.md").read_text()


def assert_mlflow_lineage(runs: Path, parent: str, child: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("aegis-ml")
    found = {}
    for run_id in (parent, child):
        [run] = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run_id}'")
        found[run_id] = run
    tags = found[child].data.tags
    assert tags["aegis.parent_run"] == parent
    assert tags["mlflow.parentRunId"] == found[parent].info.run_id
