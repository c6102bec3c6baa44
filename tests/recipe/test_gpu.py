"""Two real steps of the rendered recipe on a CUDA GPU: bf16 LoRA and 4-bit QLoRA (bitsandbytes)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tools.core.spec import TrainingSpec
from tools.inputs.local_models import resolve_model
from tools.run.render import render_script
from tools.run.sandbox import available_cores, sandbox_env

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: torch.cuda.is_available() is False"),
]


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_two_steps_on_the_gpu(tmp_path: Path, method: str) -> None:
    if method == "qlora":
        pytest.importorskip("bitsandbytes", reason="qlora needs bitsandbytes installed")
    data = tmp_path / "chat.jsonl"
    rows = [{"prompt": f"What is {i} plus {i}?", "completion": f"It is {2 * i}."} for i in range(24)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    spec = TrainingSpec(
        model_name="local:tiny-llama",
        dataset_path=str(data),
        target_gpu="a10g",
        method=method,
        precision="bf16",
        micro_batch_size=2,
        seq_len=64,
        learning_rate=1e-3,
        max_steps=2,
    )
    rendered = render_script(
        spec,
        tmp_path / "run",
        model_path=resolve_model("local:tiny-llama").path,
        dataset_path=data,
        eval_dataset_path=None,
        device="cuda",
    )
    proc = subprocess.run(
        [sys.executable, str(rendered.script_path), "--config", str(rendered.config_path)],
        cwd=rendered.workdir,
        env=sandbox_env(str(tmp_path), available_cores()),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in rendered.metrics_path.read_text().splitlines()]
    start = next(r for r in records if r["type"] == "start")
    assert start["device"].startswith("cuda") and start["dtype"] == "bf16" and start["method"] == method
    steps = [r for r in records if r["type"] == "step"]
    assert [s["step"] for s in steps] == [1, 2] and all(math.isfinite(s["loss"]) for s in steps)
    assert records[-1]["type"] == "end" and records[-1]["status"] == "completed"
    assert (rendered.output_dir / "final" / "adapter_config.json").is_file()
