"""`aegis runs`, `aegis runs compare`, and the run as MLflow and TensorBoard hold it (a real store, read back)."""

from __future__ import annotations

import json
from pathlib import Path

from agent.cli import main
from tests.use.conftest import copy_as
from tools.core.runlog import read_lines
from tools.report.tracking import RUN_TAG, collect, log_mlflow, redact_uri, run_name
from tools.use.runs import find_run


def step_records(run_dir, kind: str = "step") -> list[dict]:
    rows = [json.loads(line) for line in read_lines(run_dir / "attempt-1" / "metrics.jsonl")]
    return [r for r in rows if r.get("type") == kind]


def test_runs_lists_the_run_with_loss_before_and_after_and_cost(run_id, capsys):
    assert main(["runs", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["run_id"] == run_id and row["outcome"] == "succeeded" and row["has_model"]
    assert row["model"] == "local:tiny-llama" and row["method"] == "lora" and row["data_rows"] == 351
    assert row["loss_after"] < row["loss_before"]
    assert row["cost_usd"] >= 0 and row["train_seconds"] > 0 and row["eval_seconds"] > 0
    assert main(["runs"]) == 0
    table = capsys.readouterr().out
    assert run_id[:6] in table and "succeeded" in table and f"{row['loss_before']:.3f}" in table


def test_runs_compare_sets_two_runs_side_by_side(run_id, tmp_path, capsys):
    other = copy_as(tmp_path / "runs", run_id, "20991231-000000-abcdef")
    job_path = tmp_path / "runs" / other / "job.json"
    job = json.loads(job_path.read_text())
    job["spec"]["learning_rate"] = 0.005
    job_path.write_text(json.dumps(job))
    assert main(["runs", "compare", run_id, other, "--prompt", "Hello?", "--max-new-tokens", "6", "--json"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert c["a"]["run_id"] == run_id and c["b"]["run_id"] == other
    assert c["spec"][0] == {"name": "learning_rate", "a": "0.01", "b": "0.005", "differs": True}
    names = {m["name"] for m in c["metrics"]}
    assert {"held-out loss (base → tuned)", "cost", "training time", "data digest"} <= names
    assert c["generations"][0]["prompt"] == "Hello?" and c["generations"][0]["a"] == c["generations"][0]["b"]
    assert main(["runs", "compare", run_id[:15], "latest"]) == 0  # a start of an id; the newest run
    out = capsys.readouterr().out
    assert "learning_rate *" in out and "answers (greedy)" in out


def test_the_run_is_in_mlflow_with_every_step(trained_runs_dir):
    """Read back through the MLflow client from the store the run logged to (sqlite under the runs folder)."""
    from mlflow.tracking import MlflowClient

    [run_dir] = [p for p in trained_runs_dir.iterdir() if (p / "events.jsonl").is_file()]
    client = MlflowClient(tracking_uri=f"sqlite:///{trained_runs_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("aegis-ml")
    [run] = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run_dir.name}'")
    assert run.info.status == "FINISHED" and run.data.tags["aegis.outcome"] == "succeeded"
    steps = step_records(run_dir)
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [(m.step, round(m.value, 6)) for m in history] == [(r["step"], round(r["loss"], 6)) for r in steps]
    assert len(history) == 6
    assert len(client.get_metric_history(run.info.run_id, "train/learning_rate")) == 6
    job = find_run(run_dir.name, trained_runs_dir).job
    assert run.data.params["data_digest"] == job.data_digest and run.data.params["model_name"] == "local:tiny-llama"
    assert run.data.metrics["evals/eval_loss"] == job.eval_result.metrics["eval_loss"]
    assert run.data.metrics["evals/passed"] == 1.0 and run.data.metrics["cost_usd"] >= 0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"REPORT.md", "spec.json"} <= artifacts
    assert (
        run.info.run_name
        == run_name(job.spec, run_dir.name)
        == f"tiny-llama · lora · sample.jsonl · {run_dir.name[:13]}"
    )
    [data] = run.inputs.dataset_inputs
    assert (data.dataset.name, data.dataset.digest) == ("sample.jsonl", job.data_digest[:36])
    assert json.loads(data.dataset.profile) == {"aegis.data_digest": job.data_digest, "num_rows": 351}
    assert_one_eval_table(client, run.info.run_id, job)
    tracked = [e for e in find_run(run_dir.name, trained_runs_dir).folder.events() if e.phase == "tracking"]
    assert tracked and tracked[-1].data["mlflow_run_id"] == run.info.run_id


def assert_one_eval_table(client, mlflow_id: str, job) -> None:
    """The eval's generations as one MLflow evaluation table: prompt, reference, base and fine-tuned answers."""
    [name] = [a.path for a in client.list_artifacts(mlflow_id) if a.path.startswith("eval_generations-")]
    table = json.loads(Path(client.download_artifacts(mlflow_id, name)).read_text())
    assert table["columns"][:4] == ["prompt", "reference", "base", "fine_tuned"]
    assert [row[0] for row in table["data"]] == [g["prompt"] for g in job.eval_result.generations]
    assert [row[3] for row in table["data"]] == [g["trained"] for g in job.eval_result.generations]


def test_logging_again_updates_the_run_without_doubling_steps(run_id, tmp_path):
    from mlflow.tracking import MlflowClient

    record = find_run(run_id)
    job = record.job
    tracked = collect(
        record.folder,
        spec=job.spec,
        attempts=job.attempts,
        eval_result=job.eval_result,
        outcome="succeeded",
        data_digest=job.data_digest,
        data=job.prepared.data,
    )
    uri = f"sqlite:///{tmp_path / 'again.db'}"
    first, second = log_mlflow(tracked, uri), log_mlflow(tracked, uri)
    assert first == second
    client = MlflowClient(tracking_uri=uri)
    assert len(client.get_metric_history(first, "train/loss")) == 6
    assert len(client.get_run(first).inputs.dataset_inputs) == 1
    assert_one_eval_table(client, first, job)  # MLflow appends to a table logged again: it is logged once


def test_tensorboard_has_the_steps(trained_runs_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [run_dir] = [p for p in trained_runs_dir.iterdir() if (p / "events.jsonl").is_file()]
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    losses = [(s.step, round(s.value, 4)) for s in events.Scalars("train/loss")]
    assert losses == [(r["step"], round(r["loss"], 4)) for r in step_records(run_dir)]


def test_tracking_uri_credentials_never_shown():
    assert redact_uri("https://me:s3cret@mlflow.example.com/") == "https://***@mlflow.example.com/"
    assert redact_uri("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
