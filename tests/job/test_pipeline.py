"""`aegis train`: the deterministic pipeline on real runs — learning, healing, the retry bound, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import main
from tools.core.runlog import RunFolder

ROOT = Path(__file__).resolve().parents[2]
# Peak RSS of a tiny-llama LoRA step at seq_len 1024, measured: batch 4 ≈ 1.2 GB, batch 8 ≈ 1.6 GB.
OOM_SPEC = """model_name: local:tiny-llama
dataset_path: data/sample.jsonl
method: lora
micro_batch_size: 8
seq_len: 1024
max_steps: 2
learning_rate: 1.0e-3
target_gpu: cpu
"""


def only_run(runs: Path) -> RunFolder:
    folders = [p for p in runs.iterdir() if p.is_dir()]
    assert len(folders) == 1
    return RunFolder(folders[0])


def step_losses(folder: RunFolder, attempt: int) -> list[float]:
    lines = (folder.root / f"attempt-{attempt}" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if '"type": "step"' in line]


@pytest.mark.slow
def test_sample_spec_trains_and_the_loss_falls(tmp_path):
    assert main(["train", str(ROOT / "data/specs/sample_lora.yaml"), "--yes"]) == 0
    folder = only_run(tmp_path / "runs")
    losses = step_losses(folder, 1)
    assert losses[-1] <= 0.7 * losses[0], losses
    report = folder.report_path.read_text()
    assert f"{losses[-1]:.4f}" in report and "## Event Timeline" in report
    assert folder.loss_curve_path.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_out_of_memory_heals_by_halving_the_batch(tmp_path):
    spec = tmp_path / "oom.yaml"
    spec.write_text(OOM_SPEC)
    main(["train", str(spec), "--yes", "--memory-limit-mb", "1400"])
    folder = only_run(tmp_path / "runs")
    trains = [e for e in folder.events() if e.phase == "train" and e.status != "started"]
    assert [e.data["result"]["failure_class"] for e in trains] == ["oom", None]
    heal = next(e for e in folder.events() if e.phase == "remediate")
    assert heal.data["changes"]["micro_batch_size"] == [8, 4]
    assert heal.data["changes"]["gradient_accumulation_steps"] == [1, 2]
    assert "attempt 2" in folder.report_path.read_text()


@pytest.mark.slow
def test_retry_bound_stops_and_reports_the_failure(tmp_path):
    spec = tmp_path / "oom.yaml"
    spec.write_text(OOM_SPEC)
    assert main(["train", str(spec), "--yes", "--memory-limit-mb", "1000", "--max-retries", "1"]) == 1
    folder = only_run(tmp_path / "runs")
    failures = [e for e in folder.events() if e.phase == "train" and e.status == "failed"]
    assert len(failures) == 2
    refused = [e for e in folder.events() if e.phase == "remediate" and e.status == "failed"]
    assert len(refused) == 1 and "max_retries" in refused[0].message
    assert "failed" in folder.report_path.read_text()


@pytest.mark.slow
def test_ctrl_c_during_training_keeps_everything_written(tmp_path):
    spec = tmp_path / "long.yaml"
    spec.write_text(
        OOM_SPEC.replace("max_steps: 2", "max_steps: 500").replace("micro_batch_size: 8", "micro_batch_size: 2")
    )
    env = {**os.environ, "AEGIS_RUNS_DIR": str(tmp_path / "runs")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "train", str(spec), "--yes"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 240
    metrics = None
    while time.monotonic() < deadline:
        found = list((tmp_path / "runs").glob("*/attempt-1/metrics.jsonl"))
        if found and '"type": "step"' in found[0].read_text():
            metrics = found[0]
            break
        time.sleep(0.5)
    assert metrics is not None, proc.communicate(timeout=30)[0].decode()[-2000:]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    folder = only_run(tmp_path / "runs")
    interrupted = [e for e in folder.events() if e.status == "interrupted"]
    assert interrupted and interrupted[0].phase == "train"
    assert (folder.root / "attempt-1" / "train.log").stat().st_size > 0
    assert step_losses(folder, 1)
    assert folder.report_path.exists()


@pytest.mark.slow
def test_smollm2_learns_in_a_few_steps(tmp_path):
    """The real pretrained model, through the rendered script: held-out loss falls after a few LoRA steps."""
    from tools.core.paths import resolve_dataset_path
    from tools.core.spec import load_spec
    from tools.inputs.local_models import resolve_model
    from tools.run.local import run_local
    from tools.run.render import render_script

    spec = load_spec(ROOT / "data/specs/support_smollm2.yaml").model_copy(update={"max_steps": 6})
    rendered = render_script(
        spec,
        tmp_path / "attempt",
        model_path=resolve_model(spec.model_name).path,
        dataset_path=resolve_dataset_path(spec.dataset_path),
        eval_dataset_path=resolve_dataset_path(spec.eval_dataset_path),
        device="cpu",
    )
    result = run_local(spec, tmp_path / "attempt", rendered, timeout_s=900, memory_limit_mb=None)
    assert result.status == "succeeded", result.error_message
    assert result.steps_completed == 6
    assert result.final_eval_loss < result.initial_eval_loss


@pytest.mark.slow
def test_pause_and_resume_across_two_processes(tmp_path):
    env = {**os.environ, "AEGIS_RUNS_DIR": str(tmp_path / "runs"), "AEGIS_SOFT_THRESHOLD_USD": "0.0001"}
    env["AEGIS_BACKEND_PLUGINS"] = "tests.stand_ins:PaidGpuStandIn"  # both processes: the a10g's stand-in cloud
    env |= {"AEGIS_EVAL_ROWS": "8", "AEGIS_EVAL_GENERATIONS": "2", "AEGIS_EVAL_NEW_TOKENS": "16"}  # small evals
    # Learning rate and steps that lower the tiny model's loss (as tests/use/conftest.py's run): it must pass its evals.
    # Six steps of a random-init model lower its loss but do not teach it to answer: this test is about pausing and
    # resuming, so the reply checks (task score, degenerate replies; tests/evals covers them) are set aside.
    evals = tmp_path / "evals.yaml"
    evals.write_text("min_task_score_gain: null\nmax_degenerate_share: 1.0\n", encoding="utf-8")
    env["AEGIS_EVAL_CONFIG"] = str(evals)
    request = (
        "LoRA fine-tune local:tiny-llama on data/sample.jsonl with batch size 4, seq_len 128, learning rate 1e-2, "
        "for 6 steps on a10g"
    )

    def aegis(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """`aegis ARGS` in a process of its own: nothing is shared with the previous call but the run folder."""
        cmd = [sys.executable, "-m", "agent.cli", *args]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)

    first = aegis("run", request, timeout=300)
    assert first.returncode == 3, first.stdout + first.stderr
    thread = next(line.split()[-1] for line in first.stdout.splitlines() if line.startswith("thread:"))
    folder = RunFolder(tmp_path / "runs" / thread)
    assert not any(e.phase == "train" for e in folder.events())
    second = aegis("resume", thread, "--approve", timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    approvals = [e for e in folder.events() if e.phase == "approval"]
    assert len(approvals) == 1 and "person:cli.resume" in approvals[0].message
    assert [e.status for e in folder.events() if e.phase == "train"] == ["started", "completed"]
    assert folder.report_path.exists()
    again = aegis("resume", thread, "--approve", timeout=120)
    assert again.returncode == 2 and "no pending approval" in again.stderr
