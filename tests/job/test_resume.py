"""Checkpoint-resume healing: a retry continues from the last good checkpoint instead of paying for step 0 again."""

from __future__ import annotations

import hashlib
import json
import resource
import threading
import time
from pathlib import Path

import psutil
import pytest

from tools.core.spec import BudgetPolicy, parse_spec
from tools.inputs.prepared import prepare
from tools.job.pipeline import run_pipeline
from tools.job.state import new_job
from tools.plan.checkpoints import can_resume, checkpoint_interval, price_resumed
from tools.plan.estimator import estimate
from tools.plan.remediation import plan_remediation
from tools.run.checkpoint_files import last_good_checkpoint

ROOT = Path(__file__).resolve().parents[2]
FREE = BudgetPolicy(soft_threshold_usd=1.0, max_budget_usd=5.0)


def approve(job):
    return "approve", "person:test"


def steps_of(attempt_dir: Path) -> list[dict]:
    lines = (attempt_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == "step"]


def tiny(**overrides) -> dict:
    return {
        "model_name": "local:tiny-llama",
        "dataset_path": str(ROOT / "data/sample.jsonl"),
        "method": "lora",
        "seq_len": 128,
        "target_gpu": "cpu",
        **overrides,
    }


def test_the_interval_bounds_the_share_of_steps_a_failure_can_lose():
    assert checkpoint_interval(100, 0.1) == 10
    assert checkpoint_interval(24, 0.1) == 2
    assert checkpoint_interval(5, 0.1) == 1
    assert checkpoint_interval(1, 0.1) is None


def test_only_changes_that_keep_the_optimisation_valid_can_resume():
    spec = parse_spec(tiny(micro_batch_size=8))
    oom = plan_remediation(spec, "oom", retry_count=0, max_retries=3)
    nan = plan_remediation(spec, "nan_loss", retry_count=0, max_retries=3)
    assert can_resume(spec, oom.new_spec) and can_resume(spec, nan.new_spec)
    one = parse_spec(tiny(micro_batch_size=1, method="full_finetune"))
    lighter = plan_remediation(one, "oom", retry_count=0, max_retries=3)
    assert lighter.new_spec.method == "lora" and not can_resume(one, lighter.new_spec)


def test_a_timeout_heals_only_with_a_checkpoint():
    spec = parse_spec(tiny())
    with pytest.raises(Exception, match="no checkpoint"):
        plan_remediation(spec, "timeout", retry_count=0, max_retries=3)
    plan = plan_remediation(spec, "timeout", retry_count=0, max_retries=3, checkpoint_step=40)
    assert plan.new_spec == spec and "step 40" in plan.explanation


def test_a_resumed_attempt_is_priced_for_the_steps_left(tmp_path):
    spec = parse_spec(tiny(target_gpu="a10g", num_epochs=3))
    prepared = prepare(spec, tmp_path / "data")
    full = estimate(spec, dataset_stats=prepared.data.stats, model_config=prepared.config())
    steps = full.cost_breakdown.total_steps
    resumed, saved_s, saved_usd = price_resumed(full, steps // 2, startup_seconds=30.0)
    assert resumed.estimated_cost_usd < full.estimated_cost_usd
    assert saved_usd == pytest.approx(full.estimated_cost_usd - resumed.estimated_cost_usd)
    assert saved_s == pytest.approx((full.cost_breakdown.estimated_seconds - 30.0) * (steps // 2) / steps)
    assert any("resumes from the checkpoint" in note for note in resumed.cost_breakdown.notes)


def checkpoint(root: Path, step: int, loss: float = 2.0) -> Path:
    """A checkpoint folder as the script writes it: its files and a state.json with their sha256."""
    folder = root / "checkpoints" / f"step-{step}"
    folder.mkdir(parents=True)
    files = {}
    for name in ("trainable.pt", "optim.pt"):
        (folder / name).write_bytes(f"{name} at {step}".encode())
        files[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "state.json").write_text(json.dumps({"step": step, "loss": loss, "files": files}))
    return folder


def test_a_cut_short_checkpoint_is_not_good(tmp_path):
    good = checkpoint(tmp_path, 4)
    torn = tmp_path / "checkpoints/step-6"
    torn.mkdir()
    (torn / "state.json").write_text(json.dumps({"step": 6, "loss": 1.9}))
    assert last_good_checkpoint(tmp_path)[:2] == (4, good)


def test_a_corrupt_checkpoint_is_skipped_for_the_last_intact_one(tmp_path):
    good = checkpoint(tmp_path, 4)
    newest = checkpoint(tmp_path, 8)
    assert last_good_checkpoint(tmp_path)[:2] == (8, newest)
    (newest / "optim.pt").write_bytes(b"flipped bits")  # a disk error or a tampered file
    assert last_good_checkpoint(tmp_path)[:2] == (4, good)
    (good / "state.json").write_text('{"step": 4, "loss": 2.0}')  # no hashes: it cannot be verified
    assert last_good_checkpoint(tmp_path) is None


def squeeze_after_first_checkpoint(runs: Path, limit_mb: int) -> threading.Thread:
    """Like a neighbour taking the machine's memory: once attempt 1 saved its first checkpoint, cap its memory.

    The cap lands at the checkpoint's step or a few after, whatever the machine's speed, and more than a hundred
    steps are left then: the attempt always fails out of memory after a checkpoint, never finishes first.
    """

    def watch() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if list(runs.glob("*/attempt-1/output/checkpoints/step-*")):
                for proc in psutil.Process().children(recursive=True):
                    cmd = proc.cmdline()  # the script itself, not the bubblewrap that started it
                    if "python" in Path(cmd[0]).name and any(p.endswith("attempt-1/train.py") for p in cmd):
                        limit = limit_mb * 2**20
                        resource.prlimit(proc.pid, resource.RLIMIT_DATA, (limit, limit))
                        return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_an_out_of_memory_retry_resumes_with_the_smaller_micro_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("AEGIS_MAX_LOSS_SHARE", "0.1")  # a checkpoint every 12 of the 120 steps
    spec = parse_spec(tiny(micro_batch_size=8, learning_rate=1e-2, num_epochs=100, max_steps=120))
    squeeze = squeeze_after_first_checkpoint(tmp_path / "runs", limit_mb=64)
    job = run_pipeline(new_job(FREE), spec, ask=approve)
    squeeze.join(timeout=1)

    first, second = job.attempts[:2]
    assert first.failure_class == "oom", first.error_message
    assert 12 <= first.steps_completed < 120
    assert second.status == "succeeded" and second.steps_completed == 120 == second.total_steps
    assert 12 <= second.resumed_from_step <= first.steps_completed and second.resumed_from_step % 12 == 0
    heal = job.remediations[0]
    assert heal.changes == {"micro_batch_size": [8, 4], "gradient_accumulation_steps": [1, 2]}
    assert heal.resume.step == second.resumed_from_step and heal.resume.from_attempt == 1

    before = {r["step"]: r["loss"] for r in steps_of(Path(job.run_dir) / "attempt-1")}
    after = steps_of(Path(job.run_dir) / "attempt-2")
    assert after[0]["step"] == second.resumed_from_step + 1  # the curve continues at the next step
    assert after[0]["loss"] < before[1] - 0.5  # from where training had got to, not from the untrained model
    config = json.loads((Path(job.run_dir) / "attempt-2/config.json").read_text())
    assert config["spec"]["micro_batch_size"] == 4 and config["resume_from"].endswith(
        f"attempt-1/output/checkpoints/step-{second.resumed_from_step}"
    )
    report = Path(job.report_path).read_text()
    assert (
        "Steps resumed" in report and f"| 2 | {120 - second.resumed_from_step} | {second.resumed_from_step} (" in report
    )


@pytest.mark.slow
def test_nan_at_a_known_step_resumes_with_half_the_learning_rate_and_finishes(tmp_path):
    # Warm-up to lr 1e6 over 3 steps: step 1 trains at 0, step 2 at 3.3e5, whose update overflows the activations
    # of step 3 (measured). The checkpoint after step 2 holds that update, so the retry rewinds to step 1.
    # Precision is pinned: with 'auto' the CPU probe picks the faster of fp32 and bf16, and in fp32 the halved
    # rate overflows too (measured), so the number of retries would follow the machine's speed.
    spec = parse_spec(tiny(micro_batch_size=4, learning_rate=1e6, warmup_steps=3, max_steps=3, precision="bf16"))
    job = run_pipeline(new_job(FREE), spec, ask=approve)

    first, retry = job.attempts[0], job.attempts[1]
    assert first.failure_class == "nan_loss" and "at step 3" in first.error_message
    assert len(job.attempts) == 2 and retry.status == "succeeded"
    assert retry.steps_completed == 3 == retry.total_steps == first.total_steps  # the planned steps, in total
    records = [json.loads(x) for x in (Path(job.run_dir) / "attempt-1/metrics.jsonl").read_text().splitlines()]
    verdicts = {r["step"]: r["stable"] for r in records if r["type"] == "checkpoint"}  # the last word counts
    assert verdicts == {1: True, 2: False}
    assert retry.resumed_from_step == 1 and job.remediations[0].resume.step == 1
    assert job.remediations[0].changes["learning_rate"] == [1e6, 5e5]
    first_lrs = {r["step"]: r["lr"] for r in steps_of(Path(job.run_dir) / "attempt-1")}
    retry_lrs = {r["step"]: r["lr"] for r in steps_of(Path(job.run_dir) / "attempt-2")}
    assert sorted(retry_lrs) == [2, 3] and retry_lrs[2] == pytest.approx(first_lrs[2] / 2)  # same schedule, half

    assert job.remediations[0].resume.saved_seconds > 0
    report = Path(job.report_path).read_text()
    assert "Saved against a restart" in report and "| 2 | 2 | 1 (checkpoint of attempt 1) |" in report
