"""`aegis continue` and `--from`, end to end: real tiny-llama runs interrupted by SIGINT, lost with their machine
(SIGKILL of aegis, its watchdog and the trainer at once), continued, and built on."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from agent.cli import main
from tests.processes import aegis, aegis_env, start_aegis, training_processes, wait_for
from tools.core.runlog import RunFolder
from tools.job.attempt import SUPERVISION_FILE, Supervision
from tools.job.state import JobState
from tools.policy.records import HoldState
from tools.policy.store import spend_store
from tools.report.tracking import RUN_TAG

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STEPS = 100
SPEC = """method: lora
model_name: local:tiny-llama
dataset_path: {data}
dataset_format: instruction
num_epochs: 10
max_steps: {steps}
micro_batch_size: 4
learning_rate: {lr}
lora_dropout: 0.1
seq_len: 128
eval_split: 0.1
seed: 42
precision: fp32
target_gpu: cpu
"""
ENV = {
    "AEGIS_EVAL_ROWS": "8",
    "AEGIS_EVAL_GENERATIONS": "2",
    "AEGIS_EVAL_NEW_TOKENS": "16",
    "AEGIS_LOCAL_PRICE_USD_PER_HOUR": "3.6",  # $0.001 a second: each attempt bills something to follow
    "AEGIS_MAX_LOSS_SHARE": "0.1",  # a checkpoint every 10 of the 100 steps
}


@pytest.fixture(autouse=True)
def env(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def write_spec(tmp_path: Path, *, steps: int = STEPS, lr: float = 1e-2, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(SPEC.format(data=ROOT / "data" / "sample.jsonl", steps=steps, lr=lr))
    return path


def the_run(runs: Path) -> RunFolder:
    [folder] = [p for p in runs.iterdir() if (p / "events.jsonl").is_file()]
    return RunFolder(folder)


def job_of(folder: RunFolder) -> JobState:
    return JobState.model_validate_json((folder.root / "job.json").read_text())


def steps_of(attempt_dir: Path) -> dict[int, float]:
    records = map(json.loads, (attempt_dir / "metrics.jsonl").read_text().splitlines())
    return {r["step"]: r["loss"] for r in records if r["type"] == "step"}


def checkpointed_past(runs: Path, step: int) -> bool:
    """Attempt 1 saved a checkpoint and trained past ``step``."""
    for attempt in runs.glob("*/attempt-1"):
        if list((attempt / "output" / "checkpoints").glob("step-*")) and (attempt / "metrics.jsonl").is_file():
            return max(steps_of(attempt), default=0) >= step
    return False


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, preflight_cache) -> JobState:
    """The same run trained without a stop: the curve a continue must follow."""
    base = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AEGIS_HOME", str(base / "home"))
        mp.setenv("AEGIS_RUNS_DIR", str(base / "runs"))
        mp.setenv("AEGIS_PREFLIGHT_CACHE", str(preflight_cache))
        for name, value in ENV.items():
            mp.setenv(name, value)
        assert main(["train", str(write_spec(base)), "--yes"]) == 0
        return job_of(the_run(base / "runs"))


def assert_follows_the_uninterrupted_curve(job: JobState, uninterrupted: JobState) -> None:
    first, last = job.attempts[0], job.attempts[-1]
    resumed = last.resumed_from_step
    assert resumed >= 10 and last.status == "succeeded"
    assert last.steps_completed == last.total_steps == STEPS  # every planned optimizer step, once
    continued = steps_of(Path(last.output_dir).parent)
    assert sorted(continued) == list(range(resumed + 1, STEPS + 1))
    straight = dict(uninterrupted.attempts[0].loss_curve)
    before = dict(first.loss_curve)[resumed]  # the loss at the checkpoint it continued from
    base_loss = first.loss_curve[0][1]
    assert abs(continued[resumed + 1] - before) < 0.25 * abs(base_loss - before)  # not the base model's loss
    assert continued[resumed + 1] == pytest.approx(straight[resumed + 1], abs=1e-4)
    assert last.final_eval_loss == pytest.approx(uninterrupted.attempts[0].final_eval_loss, abs=1e-3)


def assert_priced_for_the_steps_left(job: JobState) -> None:
    """One approval for the continue, of the estimate for the steps after the checkpoint only."""
    first, again = spend_store().grants(job.run_id)  # the first run's approval, and one for the continue
    resumed = job.attempts[-1].resumed_from_step
    [point] = job.continued
    assert point.step == resumed and point.saved_usd > 0
    assert again.approved_usd == pytest.approx(job.estimate.estimated_cost_usd)
    assert again.approved_usd < first.approved_usd
    note = f"resumes from the checkpoint at step {resumed} of {STEPS}: prices the {STEPS - resumed} steps left"
    assert any(note in line for line in job.estimate.cost_breakdown.notes)


def test_a_run_stopped_with_ctrl_c_continues_from_its_checkpoint(tmp_path, uninterrupted, monkeypatch):
    monkeypatch.setenv("AEGIS_TRACKING", "mlflow")
    runs = tmp_path / "runs"
    proc = start_aegis(aegis_env(tmp_path), "train", str(write_spec(tmp_path)), "--yes", log=tmp_path / "a.log")
    wait_for(lambda: checkpointed_past(runs, int(STEPS * 0.6)), 300, "60% of the steps")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, (tmp_path / "a.log").read_text()[-2000:]
    folder = the_run(runs)
    assert job_of(folder).status == "interrupted"

    assert main(["continue", folder.run_id, "--yes"]) == 0
    job = job_of(folder)
    assert job.status == "succeeded" and len(job.attempts) == 2
    assert_follows_the_uninterrupted_curve(job, uninterrupted)
    assert_priced_for_the_steps_left(job)
    [priced] = [e for e in folder.events() if e.phase == "continue" and e.status == "completed"]
    assert f"{STEPS - job.attempts[-1].resumed_from_step} steps left of {STEPS}" in priced.message
    report = folder.report_path.read_text()
    assert "Continued with `aegis continue` from the checkpoint" in report
    assert_mlflow_has_the_continued_steps(runs, job)


def assert_mlflow_has_the_continued_steps(runs: Path, job: JobState) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("aegis-ml")
    [run] = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{job.run_id}'")
    continued = client.get_metric_history(run.info.run_id, "attempt2/train/loss")
    assert sorted(m.step for m in continued) == list(range(job.attempts[-1].resumed_from_step + 1, STEPS + 1))


def kill_like_a_power_loss(proc, workdir: Path) -> None:
    """SIGKILL the watchdog first (so it cannot book anything), then the trainer's group and aegis itself."""
    who = Supervision.model_validate_json((workdir / SUPERVISION_FILE).read_text())
    os.kill(who.watchdog, signal.SIGKILL)
    os.killpg(who.trainer_group, signal.SIGKILL)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_run_lost_with_its_machine_is_reconciled_at_the_next_start_and_continues(tmp_path, uninterrupted):
    runs = tmp_path / "runs"
    env = aegis_env(tmp_path)
    proc = start_aegis(env, "train", str(write_spec(tmp_path)), "--yes", log=tmp_path / "a.log")
    wait_for(lambda: checkpointed_past(runs, int(STEPS * 0.6)), 300, "60% of the steps")
    folder = the_run(runs)
    wait_for(lambda: (folder.root / "attempt-1" / SUPERVISION_FILE).is_file(), 30, "the supervision record")
    kill_like_a_power_loss(proc, folder.root / "attempt-1")
    wait_for(lambda: not training_processes(runs), 30, "the training to be gone")

    [held] = spend_store().attempts(job_id=folder.run_id)
    assert held.state is HoldState.HELD  # nothing booked it: the money stays held
    last_progress = (folder.root / "attempt-1" / "metrics.jsonl").stat().st_mtime

    listed = aegis(env, "runs", "--json", timeout=120)  # any next start of aegis reconciles
    assert listed.returncode == 0, listed.stderr
    assert "reconciled:" in listed.stderr and folder.run_id in listed.stderr
    [booked] = spend_store().attempts(job_id=folder.run_id)
    assert booked.state is HoldState.CAPTURED and booked.outcome == "interrupted"
    assert booked.captured_usd == pytest.approx((last_progress - held.started) * 0.001, abs=0.002)
    assert booked.captured_usd < held.held_usd
    assert spend_store().money(folder.run_id).held_usd == 0
    [summary] = json.loads(listed.stdout)
    assert summary["outcome"] == "interrupted"
    assert "reconciled when aegis next started" in folder.report_path.read_text()
    again = aegis(env, "runs", timeout=120)
    assert "reconciled:" not in again.stderr  # once

    assert main(["continue", folder.run_id, "--yes"]) == 0
    job = job_of(folder)
    assert job.status == "succeeded"
    assert_follows_the_uninterrupted_curve(job, uninterrupted)
    assert_priced_for_the_steps_left(job)
