"""Shared helpers of the benchmarks: the bigger random Llama, machine facts, the load average."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:  # `python bench/x.py` from the repository root
    sys.path.insert(0, str(ROOT))

from tools.core.paths import model_cache_dir  # noqa: E402
from tools.inputs.local_models import TINY_LLAMA, local_model_config, resolve_model  # noqa: E402

BENCH_LLAMA = "bench:llama-27m"
# tiny-llama's shape scaled up (hidden 256 -> 512, 4 -> 8 layers): 27.4M parameters, about 6.5x tiny-llama's 4.2M.
BENCH_LLAMA_SHAPE: dict[str, Any] = {
    "hidden_size": 512,
    "intermediate_size": 1376,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "initializer_range": 0.02,
}
BENCH_SEED = 4321


def bench_llama_path() -> Path:
    """Build (once) a random-weight Llama with tiny-llama's tokenizer in the model cache; return its folder."""
    folder = model_cache_dir() / "bench-llama-27m"
    marker = folder / "bench_model.json"
    if marker.is_file() and json.loads(marker.read_text())["shape"] == BENCH_LLAMA_SHAPE:
        return folder
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tiny = resolve_model(TINY_LLAMA).path
    values = {**local_model_config(TINY_LLAMA), **BENCH_LLAMA_SHAPE}
    torch.manual_seed(BENCH_SEED)
    model = LlamaForCausalLM(LlamaConfig(**values))
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(tmp)
    (tmp / "bench_model.json").write_text(json.dumps({"shape": BENCH_LLAMA_SHAPE, "seed": BENCH_SEED}))
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def model_path(name: str) -> str:
    """A benchmark model name to a folder from_pretrained (and the estimator) can open."""
    return str(bench_llama_path()) if name == BENCH_LLAMA else resolve_model(name).path


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    model = ""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    info = {
        "cpu": model,
        "cores": cores,
        "memory_gb": round(mem_gb, 1),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    import transformers

    info["transformers"] = transformers.__version__
    return info


def save_results(name: str, report: dict[str, Any], markdown: str) -> None:
    """bench/results/<name>-<date>.json and .md: the figures and their table, kept beside the code."""
    import datetime as dt

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = RESULTS_DIR / f"{name}-{dt.date.today().isoformat()}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(markdown, encoding="utf-8")
    print(f"wrote {stem}.json and {stem}.md")
