"""Live tracking: a training's steps reach MLflow and TensorBoard while it trains, once each; a tracker that fails
holds up neither the training nor the other tracker, and is said once."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

import pytest

from tests.processes import aegis_env, first_step_written, start_aegis, training_processes, wait_for
from tools.core.runlog import RunFolder, read_lines
from tools.core.spec import parse_spec
from tools.report import live_tracking
from tools.report.live_tracking import LiveStart, follow_live
from tools.report.mlflow_store import RUN_TAG, table_columns
from tools.report.tracking import StepPoint, TrackedRun, log_mlflow, run_name
from tools.use.runs import find_run

ROOT = Path(__file__).resolve().parents[2]
STEPS = 200
SPEC = """method: lora
model_name: local:tiny-llama
dataset_path: {data}
dataset_format: instruction
num_epochs: 50
max_steps: {steps}
micro_batch_size: 1
learning_rate: 1.0e-2
seq_len: 128
eval_split: 0.1
seed: 7
target_gpu: cpu
"""
SMALL_EVALS = {"AEGIS_EVAL_ROWS": "8", "AEGIS_EVAL_GENERATIONS": "2", "AEGIS_EVAL_NEW_TOKENS": "8"}


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_steps(path: Path, n: int, every_s: float) -> float:
    """What a training script writes: one step record per line, flushed; the seconds it took to write them all."""
    began = time.monotonic()
    with path.open("a", encoding="utf-8") as fh:
        for step in range(1, n + 1):
            fh.write(json.dumps({"type": "step", "step": step, "loss": 2.0 / step, "lr": 1e-3, "elapsed_s": step}))
            fh.write("\n")
            fh.flush()
            time.sleep(every_s)
    return time.monotonic() - began


def a_start(tmp_path: Path, uri: str) -> LiveStart:
    run = tmp_path / "runs" / "20261207-135000-abcdef"
    (run / "attempt-1").mkdir(parents=True)
    return LiveStart(
        run_id=run.name,
        run_dir=str(run),
        name="tiny-llama · lora · sample.jsonl · 20261207-1350",
        attempt=1,
        metrics_path=str(run / "attempt-1" / "metrics.jsonl"),
        started=time.time(),
        trackers=["mlflow", "tensorboard"],
        uri=uri,
    )


def board_steps(run_dir: Path, key: str = "train/loss") -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [s.step for s in events.Scalars(key)] if key in events.Tags()["scalars"] else []


def live_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aegis.tracking" and r.levelno == logging.WARNING]


def test_an_unreachable_mlflow_server_is_said_once_and_the_rest_goes_on(tmp_path, monkeypatch, caplog):
    """The server refuses at once (MLflow told not to retry): one warning, one event, TensorBoard has every step."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    start = a_start(tmp_path, f"http://127.0.0.1:{closed_port()}")
    with caplog.at_level(logging.WARNING, logger="aegis.tracking"), follow_live(start) as follower:
        wrote = write_steps(Path(start.metrics_path), 20, 0.05)
    assert wrote < 5.0  # the training's side never waits on a tracker
    assert follower is not None and follower.problem is not None and "MLflow" in follower.problem
    [warning] = live_warnings(caplog)
    assert "127.0.0.1" in warning and "the training goes on" in warning
    [event] = [e for e in RunFolder(Path(start.run_dir)).events() if e.phase == "tracking"]
    assert event.status == "failed" and event.message.startswith("live tracking: MLflow")
    assert follower.sent == {"tensorboard": 40} and board_steps(Path(start.run_dir)) == list(range(1, 21))


def test_a_tracker_that_never_answers_is_given_up_within_the_bound(tmp_path, monkeypatch, caplog):
    """MLflow's own retries would take minutes against a closed port: the attempt's end waits JOIN_S, no more."""
    monkeypatch.setattr(live_tracking, "JOIN_S", 2.0)
    start = a_start(tmp_path, f"http://127.0.0.1:{closed_port()}")
    with caplog.at_level(logging.WARNING, logger="aegis.tracking"), follow_live(start) as follower:
        write_steps(Path(start.metrics_path), 10, 0.05)
        ending = time.monotonic()
    assert time.monotonic() - ending < 2.0 + 2 * live_tracking.LIVE_POLL_S
    assert (
        follower is not None and follower.problem == "MLflow did not answer within 2 s; its live logging was given up"
    )
    assert len(live_warnings(caplog)) == 1
    assert board_steps(Path(start.run_dir)) == list(range(1, 11))


def test_tracking_off_follows_nothing(tmp_path):
    folder = RunFolder.create("20261207-135000-abcdef", tmp_path / "runs")
    spec = parse_spec({"model_name": "local:tiny-llama", "dataset_path": str(ROOT / "data/sample.jsonl")})
    assert live_tracking.live_start(folder, spec, attempt=1, metrics_path=folder.root / "m.jsonl", data=None) is None


def test_a_run_is_named_for_what_ran_and_its_table_has_every_key_of_its_rows():
    spec = parse_spec(
        {
            "model_name": "local:smollm2-135m-instruct",
            "method": "lora",
            "dataset_path": str(ROOT / "data/support_train.jsonl"),
        }
    )
    assert (
        run_name(spec, "20261207-135012-a1b2c3") == "smollm2-135m-instruct · lora · support_train.jsonl · 20261207-1350"
    )
    rows = [
        {"prompt": "p", "reference": "r", "base": "b", "trained": "t", "scores": {"trained": {"rouge_l": 0.5}}},
        {"prompt": "q", "base": "c", "trained": "u", "degenerate": {"base": None, "trained": "only punctuation"}},
    ]
    columns = table_columns(rows)
    assert list(columns)[:4] == ["prompt", "reference", "base", "fine_tuned"]
    assert columns["scores.fine_tuned.rouge_l"] == [0.5, None]
    assert columns["degenerate.fine_tuned"] == [None, "only punctuation"]


def mlflow_run(uri: str, run_id: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("aegis-ml")
    if experiment is None:
        return client, None
    found = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run_id}'")
    return client, (found[0] if found else None)


def logged_while_training(uri: str, run_id: str) -> int:
    client, run = mlflow_run(uri, run_id)
    return len(client.get_metric_history(run.info.run_id, "train/loss")) if run is not None else 0


@pytest.mark.slow
def test_steps_reach_mlflow_and_tensorboard_while_the_run_trains(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(data=ROOT / "data" / "sample.jsonl", steps=STEPS))
    runs = tmp_path / "runs"
    uri = f"sqlite:///{runs / 'mlflow.db'}"
    env = aegis_env(tmp_path, AEGIS_TRACKING="mlflow,tensorboard", **SMALL_EVALS)
    proc = start_aegis(env, "train", str(spec), "--yes", log=tmp_path / "train.log")
    try:
        metrics = wait_for(lambda: first_step_written(runs), 300, "the first step")
        run_dir = metrics.parent.parent
        assert metrics.parent.name == "attempt-1"  # a CPU run has no probe attempt before it
        logged = wait_for(lambda: logged_while_training(uri, run_dir.name), 120, "steps in MLflow")
        live_board = board_steps(run_dir)
        assert proc.poll() is None and training_processes(runs), "the run ended before its steps were seen live"
        assert logged > 0 and live_board
        written = [r for r in map(json.loads, read_lines(metrics)) if r.get("type") == "step"]
        assert logged < STEPS and len(written) < STEPS  # seen mid-run, not replayed at the end
        assert proc.wait(timeout=900) == 0, (tmp_path / "train.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_logged_once_with_data_and_table(uri, run_dir)


def assert_logged_once_with_data_and_table(uri: str, run_dir: Path) -> None:
    client, run = mlflow_run(uri, run_dir.name)
    record = find_run(run_dir.name, run_dir.parent)
    assert len(record.job.attempts) == 1
    written = map(json.loads, read_lines(run_dir / "attempt-1" / "metrics.jsonl"))
    steps = [r["step"] for r in written if r.get("type") == "step"]
    history = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert sorted(history) == steps and len(steps) == STEPS  # every step, none twice
    assert len(client.get_metric_history(run.info.run_id, "train/learning_rate")) == STEPS
    assert run.info.status == "FINISHED" and run.data.tags["aegis.outcome"] == record.job.status == "succeeded"
    assert run.info.run_name == run_name(record.job.spec, run_dir.name)
    [data] = run.inputs.dataset_inputs
    assert data.dataset.name == "sample.jsonl" and record.job.data_digest.startswith(data.dataset.digest)
    assert json.loads(data.dataset.profile)["aegis.data_digest"] == record.job.data_digest
    assert {t.key: t.value for t in data.tags}["mlflow.data.context"] == "training"
    tables = [a.path for a in client.list_artifacts(run.info.run_id) if a.path.startswith("eval_generations-")]
    assert len(tables) == 1
    table = json.loads(Path(client.download_artifacts(run.info.run_id, tables[0])).read_text())
    assert table["columns"][:4] == ["prompt", "reference", "base", "fine_tuned"] and len(table["data"]) == 2
    assert board_steps(run_dir) == steps


def test_a_continued_run_gets_its_new_attempt_live_and_no_step_twice(tmp_path):
    """Attempt 1 logged at the end of its run; attempt 2 (a continue) followed live; the end logs both again."""
    from mlflow.tracking import MlflowClient

    start = a_start(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    first = [
        StepPoint(key=key, value=1.0 / step, step=step, wall_time=start.started + step)
        for step in range(1, 6)
        for key in ("train/loss", "train/learning_rate")
    ]
    run = TrackedRun(
        run_id=start.run_id,
        run_dir=start.run_dir,
        name=start.name,
        outcome="interrupted",
        started=start.started,
        params={"method": "lora"},
        tags={},
        points=first,
    )
    mlflow_id = log_mlflow(run, start.uri)
    second = start.model_copy(update={"attempt": 2, "metrics_path": str(Path(start.run_dir) / "attempt-2.jsonl")})
    with follow_live(second) as follower:
        write_steps(Path(second.metrics_path), 4, 0.05)
    assert follower is not None and follower.problem is None and follower.sent["mlflow"] == 8
    client = MlflowClient(tracking_uri=start.uri)
    assert client.get_run(mlflow_id).info.status == "RUNNING"  # again, while the continue trained
    again = [p.model_copy(update={"key": "attempt2/" + p.key}) for p in first if p.step <= 4]
    log_mlflow(run.model_copy(update={"outcome": "succeeded", "points": first + again}), start.uri)
    assert [m.step for m in client.get_metric_history(mlflow_id, "train/loss")] == [1, 2, 3, 4, 5]
    assert sorted(m.step for m in client.get_metric_history(mlflow_id, "attempt2/train/loss")) == [1, 2, 3, 4]
    assert client.get_run(mlflow_id).info.status == "FINISHED"
