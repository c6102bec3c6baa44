"""What a continue refuses, in one line and with nothing billed: changed data, a changed model, a finished run,
a cancelled one; and what `--from` refuses: another model, an adapter of another shape, a full fine-tune from an
adapter. The runs are real (tiny-llama, in this process); a stop request interrupts the first one mid-run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.cli import main
from tools.core.spec import BudgetPolicy, parse_spec
from tools.core.status import Decision
from tools.core.stop import clear_stop, request_stop
from tools.inputs.local_models import resolve_model
from tools.job.pipeline import run_pipeline
from tools.job.state import JobState, new_job
from tools.policy.records import Lifecycle
from tools.policy.store import spend_store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FREE = BudgetPolicy(soft_threshold_usd=1.0, max_budget_usd=5.0)


def approve(job: JobState) -> tuple[Decision, str]:
    return Decision.APPROVE, "person:test"


def stop_at(step: int):
    def on_progress(record: dict) -> None:
        if record.get("step", 0) >= step:
            request_stop()

    return on_progress


def spec_for(tmp_path: Path, **overrides):
    values = {
        "model_name": str(tmp_path / "model"),
        "dataset_path": str(tmp_path / "data.jsonl"),
        "method": "lora",
        "seq_len": 128,
        "target_gpu": "cpu",
        "precision": "fp32",
        "learning_rate": 1e-2,
        "max_steps": 60,
        "num_epochs": 10,
        **overrides,
    }
    return parse_spec(values)


@pytest.fixture
def interrupted(tmp_path, monkeypatch, capsys) -> JobState:
    """A real run stopped at step 20 of 60, with checkpoints every 6 steps; its own copy of the model and data."""
    monkeypatch.setenv("AEGIS_DATA_DIRS", str(tmp_path))
    monkeypatch.setenv("AEGIS_MAX_LOSS_SHARE", "0.1")
    monkeypatch.setenv("AEGIS_LOCAL_PRICE_USD_PER_HOUR", "3.6")
    shutil.copytree(resolve_model("local:tiny-llama").path, tmp_path / "model")
    shutil.copy(ROOT / "data" / "sample.jsonl", tmp_path / "data.jsonl")
    try:
        job = run_pipeline(new_job(FREE), spec_for(tmp_path), ask=approve, on_progress=stop_at(20))
    finally:
        clear_stop()
    assert job.status == "interrupted" and job.attempts[-1].steps_completed < 60
    capsys.readouterr()
    return job


def refused(capsys, *args: str, says: str) -> None:
    assert main(list(args)) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def nothing_billed(job: JobState) -> None:
    store = spend_store()
    assert len(store.attempts(job_id=job.run_id)) == 1 and len(store.grants(job.run_id)) == 1
    assert store.job(job.run_id).lifecycle is not Lifecycle.OPEN


def test_a_continue_refuses_changed_data_a_changed_model_and_a_cancelled_run(
    interrupted, tmp_path, capsys, monkeypatch
):
    run = interrupted.run_id
    with monkeypatch.context() as other:
        other.setenv("AEGIS_USER", "mallory")  # someone else's continue would spend against the run's person
        refused(capsys, "continue", run, "--yes", says="only")
    nothing_billed(interrupted)
    data = tmp_path / "data.jsonl"
    original = data.read_bytes()
    data.write_bytes(original + original.splitlines(keepends=True)[0])
    refused(capsys, "continue", run, "--yes", says="the training data changed since run")
    nothing_billed(interrupted)
    data.write_bytes(original)  # the same bytes again (a new mtime): the same data

    config = tmp_path / "model" / "config.json"
    before = config.read_text()
    config.write_text(before.replace("{", '{"aegis_test_changed": 1, ', 1))
    refused(capsys, "continue", run, "--yes", says=f"is not the one run {run} trained")
    nothing_billed(interrupted)
    config.write_text(before)

    assert main(["continue", run]) != 0  # no terminal and no --yes: the continue's approval is cancelled
    assert "approval needed" in capsys.readouterr().err
    nothing_billed(interrupted)
    refused(capsys, "continue", run, "--yes", says="was cancelled")
    nothing_billed(interrupted)


def test_a_finished_run_is_built_on_with_from_not_continued(interrupted, tmp_path, capsys):
    run = interrupted.run_id
    clear_stop()
    assert main(["continue", run, "--yes"]) == 0
    capsys.readouterr()
    refused(capsys, "continue", run, "--yes", says=f"aegis train SPEC --from {run}")
    child = tmp_path / "child.yaml"
    child.write_text(spec_for(tmp_path, lora_r=4).model_dump_json())
    refused(capsys, "train", str(child), "--from", run, "--yes", says="lora_r 4")
    child.write_text(spec_for(tmp_path, method="full_finetune").model_dump_json())
    refused(capsys, "train", str(child), "--from", run, "--yes", says="cannot start from an adapter alone")
    child.write_text(spec_for(tmp_path, model_name="local:tiny-llama").model_dump_json())
    refused(capsys, "train", str(child), "--from", run, "--yes", says="do not fit another")
