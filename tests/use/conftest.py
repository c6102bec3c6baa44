"""One real run, trained once per session (LoRA on the tiny Llama, a few steps, small evals), copied into each test.

Training it takes about a minute on two cores; every test then works on its own copy in its own runs folder, so
tests can export, push and compare without touching each other.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.cli import main

ROOT = Path(__file__).resolve().parents[2]
SPEC = """method: lora
model_name: local:tiny-llama
dataset_path: {data}
dataset_format: instruction
num_epochs: 1
max_steps: 6
micro_batch_size: 4
learning_rate: 1.0e-2
seq_len: 128
eval_split: 0.1
seed: 42
target_gpu: cpu
"""
SMALL_EVALS = {"AEGIS_EVAL_ROWS": "8", "AEGIS_EVAL_GENERATIONS": "2", "AEGIS_EVAL_NEW_TOKENS": "16"}


@pytest.fixture(scope="session")
def trained_runs_dir(tmp_path_factory, preflight_cache) -> Path:
    """A runs folder holding one finished tiny-llama run and its MLflow store."""
    base = tmp_path_factory.mktemp("trained")
    spec = base / "spec.yaml"
    spec.write_text(SPEC.format(data=ROOT / "data" / "sample.jsonl"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AEGIS_HOME", str(base / "home"))
        mp.setenv("AEGIS_RUNS_DIR", str(base / "runs"))
        mp.setenv("AEGIS_PREFLIGHT_CACHE", str(preflight_cache))
        mp.setenv("AEGIS_TRACKING", "mlflow,tensorboard")  # whatever the suite's default, this run is tracked
        for name, value in SMALL_EVALS.items():
            mp.setenv(name, value)
        assert main(["train", str(spec), "--yes"]) == 0
    return base / "runs"


def run_folders(runs: Path) -> list[Path]:
    return sorted(p for p in runs.iterdir() if (p / "events.jsonl").is_file())


@pytest.fixture
def run_id(trained_runs_dir, tmp_path) -> str:
    """The trained run, copied into this test's runs folder (AEGIS_RUNS_DIR); its id."""
    source = run_folders(trained_runs_dir)[0]
    shutil.copytree(source, tmp_path / "runs" / source.name)
    return source.name


def copy_as(runs: Path, run_id: str, new_id: str) -> str:
    """A second run made from the first, under another id (its folder name)."""
    shutil.copytree(runs / run_id, runs / new_id)
    return new_id
