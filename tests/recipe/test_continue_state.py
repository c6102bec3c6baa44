"""A run continues where it stopped, and starts where another ended.

Resume: a checkpoint holds everything a continue needs (weights, optimizer, schedule, the random number generators
that draw the dropout masks), so a resumed run follows the uninterrupted run's curve step for step.
Warm start: a new LoRA run loads a finished run's adapter and starts from its loss, not the base model's.
Both train the locally built tiny model on the CPU through the rendered script, as a real attempt does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tools.core.errors import AegisError
from tools.core.spec import TrainingSpec
from tools.inputs.local_models import resolve_model
from tools.recipe.exits import EXIT_CODES
from tools.run.render import render_script
from tools.run.sandbox import available_cores, sandbox_env

ROOT = Path(__file__).resolve().parents[2]


def sample(tmp_path_factory: pytest.TempPathFactory, rows: int) -> Path:
    """The first rows of the sample set (a tenth held out): at two packed rows a step, an epoch is rows / 6 steps."""
    path = tmp_path_factory.mktemp("data") / "data.jsonl"
    path.write_text("".join((ROOT / "data/sample.jsonl").read_text().splitlines(keepends=True)[:rows]))
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten steps an epoch: a run of 12 crosses an epoch boundary, where the data order is shuffled again."""
    return sample(tmp_path_factory, 60)


@pytest.fixture(scope="module")
def more_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sixteen steps an epoch: enough rows that a parent's last batches are not all ones it has learned by heart."""
    return sample(tmp_path_factory, 100)


def spec(dataset: Path, **fields) -> TrainingSpec:
    fields = {
        "method": "lora",
        "seq_len": 128,
        "micro_batch_size": 2,
        "learning_rate": 1e-3,
        "precision": "fp32",
        **fields,
    }
    return TrainingSpec(model_name="local:tiny-llama", dataset_path=str(dataset), target_gpu="cpu", **fields)


def train(workdir: Path, training: TrainingSpec, **extra) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Render the script for one attempt and run it; its exit and its metrics records."""
    rendered = render_script(
        training,
        workdir,
        model_path=resolve_model("local:tiny-llama").path,
        dataset_path=Path(training.dataset_path),
        eval_dataset_path=None,
        extra=extra,
    )
    proc = subprocess.run(
        [sys.executable, str(rendered.script_path), "--config", str(rendered.config_path)],
        cwd=rendered.workdir,
        env=sandbox_env(str(workdir), available_cores()),
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = rendered.metrics_path.read_text().splitlines() if rendered.metrics_path.exists() else []
    return proc, [json.loads(line) for line in lines]


def losses(records: list[dict]) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in records if r["type"] == "step"}


def evals(records: list[dict]) -> list[float]:
    return [r["eval_loss"] for r in records if r["type"] == "eval"]


@pytest.fixture(scope="module")
def uninterrupted(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """12 steps with dropout on the LoRA input, a checkpoint every 4 (kept: 4 and 8)."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    proc, records = train(workdir, spec(dataset, lora_dropout=0.1, max_steps=12), checkpoint_every=4)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir / "output", records


@pytest.mark.parametrize("step", [4, 8])
def test_a_resumed_run_follows_the_uninterrupted_curve(dataset, uninterrupted, tmp_path, step):
    output, records = uninterrupted
    checkpoint = output / "checkpoints" / f"step-{step}"
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["step"] == step and state["total_steps"] == 12 and state["seed"] == 42
    proc, resumed = train(tmp_path, spec(dataset, lora_dropout=0.1, max_steps=12), resume_from=str(checkpoint))
    assert proc.returncode == 0, proc.stderr[-3000:]

    whole, rest = losses(records), losses(resumed)
    assert len(whole) == 12 and sorted(rest) == list(range(step + 1, 13))
    assert len(set(whole.values())) == 12  # dropout and updates at work: no two steps alike
    for n, loss in rest.items():
        assert loss == pytest.approx(whole[n], abs=1e-5), f"step {n}: resumed {loss}, uninterrupted {whole[n]}"
    assert evals(resumed)[-1] == pytest.approx(evals(records)[-1], abs=1e-5)


def test_a_checkpoint_saved_before_the_generators_were_kept_still_resumes(dataset, uninterrupted, tmp_path):
    output, records = uninterrupted
    old = tmp_path / "step-8"
    shutil.copytree(output / "checkpoints" / "step-8", old)
    optim = torch.load(old / "optim.pt")
    assert set(optim) == {"optimizer", "scheduler", "rng"}  # no GradScaler on a CPU
    torch.save({"optimizer": optim["optimizer"], "scheduler": optim["scheduler"]}, old / "optim.pt")
    proc, resumed = train(tmp_path / "run", spec(dataset, lora_dropout=0.1, max_steps=12), resume_from=str(old))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "holds no random number generator states" in proc.stdout
    assert sorted(losses(resumed)) == [9, 10, 11, 12]


@pytest.fixture(scope="module")
def parent(more_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A finished LoRA run whose loss dropped clearly (two epochs at a high rate): its adapter in output/final/."""
    workdir = tmp_path_factory.mktemp("parent")
    proc, records = train(workdir, spec(more_data, max_steps=20, learning_rate=1e-2))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir / "output" / "final", records


def test_a_warm_started_run_begins_where_its_parent_ended(more_data, parent, tmp_path):
    final, records = parent
    proc, child = train(tmp_path, spec(more_data, max_steps=1, learning_rate=1e-2), init_adapter=str(final))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"warm start from adapter {final}" in proc.stdout

    assert evals(records)[-1] < evals(records)[0] - 1  # the parent learned something worth starting from
    # the base model's first step and the child's see the same batch (same seed): only the weights differ
    base_first, parent_last, child_first = losses(records)[1], losses(records)[20], losses(child)[1]
    assert child_first == pytest.approx(parent_last, rel=0.1)
    assert child_first < base_first - 1
    # the same held-out rows and the same weights, dropout off: the parent's last eval is the child's first
    assert evals(child)[0] == pytest.approx(evals(records)[-1], abs=1e-5)


def test_an_adapter_that_does_not_fit_the_new_lora_is_refused(more_data, parent, tmp_path):
    final, _ = parent
    proc, records = train(tmp_path, spec(more_data, max_steps=2, lora_r=4), init_adapter=str(final))
    assert proc.returncode == EXIT_CODES["config"], proc.stderr[-3000:]
    assert "AEGIS-ERROR [config]" in proc.stderr and "lora_r 16 there, 4 here" in proc.stderr
    end = records[-1]
    assert end["type"] == "end" and end["reason"] == "config" and "lora_r 16 there, 4 here" in end["message"]
    assert not any(r["type"] == "step" for r in records)
    other = spec(more_data, max_steps=2, lora_target_modules=["q_proj", "v_proj"])
    proc, _ = train(tmp_path / "targets", other, init_adapter=str(final))
    assert proc.returncode == EXIT_CODES["config"]
    assert (
        "lora_target_modules ['k_proj', 'o_proj', 'q_proj', 'v_proj'] there, ['q_proj', 'v_proj'] here" in proc.stderr
    )


def test_a_warm_start_needs_a_lora_and_an_adapter_folder(more_data, parent, tmp_path):
    final, _ = parent
    full = spec(more_data, max_steps=2, method="full_finetune")
    proc, _ = train(tmp_path / "full", full, init_adapter=str(final))
    assert proc.returncode == EXIT_CODES["config"]
    assert "init_adapter needs method lora or qlora" in proc.stderr
    with pytest.raises(AegisError, match="init_adapter.*adapter_config.json"):
        render_script(
            spec(more_data),
            tmp_path / "nothing",
            model_path="/models/tiny",
            dataset_path=more_data,
            eval_dataset_path=None,
            extra={"init_adapter": str(tmp_path)},
        )
