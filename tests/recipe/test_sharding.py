"""FSDP in the training script: two ranks on this CPU (gloo) shard, train and gather the model back whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tools.core.spec import TrainingSpec
from tools.inputs.local_models import resolve_model
from tools.run.render import render_script

DATA = Path(__file__).resolve().parents[2] / "data" / "sample.jsonl"


def _run_on_two_cpu_ranks(tmp_path: Path, method: str) -> Path:
    tiny = resolve_model("local:tiny-llama").path
    spec = TrainingSpec(
        model_name="local:tiny-llama",
        dataset_path=str(DATA),
        method=method,
        target_gpu="h100",
        num_gpus=2,
        sharding="fsdp",
        max_steps=2,
        micro_batch_size=2,
        seq_len=128,
        eval_split=0.0,
    )
    rendered = render_script(
        spec, tmp_path, model_path=str(tiny), dataset_path=DATA, eval_dataset_path=None, device="cuda"
    )
    config = json.loads(rendered.config_path.read_text(encoding="utf-8"))
    config.update(device="cpu", precision="fp32")  # the same program, on gloo instead of NCCL
    rendered.config_path.write_text(json.dumps(config), encoding="utf-8")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*launcher, str(rendered.script_path), "--config", str(rendered.config_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp_path / "output" / "final"


@pytest.mark.slow
def test_a_sharded_full_finetune_saves_every_weight(tmp_path: Path) -> None:
    final = _run_on_two_cpu_ranks(tmp_path, "full_finetune")
    weights = load_file(final / "model.safetensors")
    assert sum(t.numel() for name, t in weights.items() if name != "lm_head.weight") == 4_212_992  # not a shard


@pytest.mark.slow
def test_a_sharded_lora_run_saves_the_whole_adapter(tmp_path: Path) -> None:
    final = _run_on_two_cpu_ranks(tmp_path, "lora")
    adapter = load_file(final / "adapter_model.safetensors")
    assert sum(t.numel() for t in adapter.values()) == 131_072
