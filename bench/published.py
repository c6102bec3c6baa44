"""The estimator against published measured training runs: the Qwen README's profiling table.

Each row of bench/published/qwen_readme.yaml is one model, method and GPU count measured at six sequence
lengths on A100-80GB. The same job is written as a TrainingSpec (micro batch 1, accumulation 8, gradient
checkpointing, LoRA r=64 on Qwen's targets, padded rows) and given to the estimator with the model's
published shape and what Qwen's script did that the spec does not say (REFERENCE_SCRIPTS); its seconds per
optimizer step and its memory (summed over the GPUs, as the README reports it) are compared with the measured ones.

Rows are split in two: the calibration rows are the only ones the fitted constants of
tools/plan/calibration.py were fitted to (`--fit`); the held-out rows (every Qwen-7B row) never were, so
their errors say how the estimator does on a model it was not tuned on. Rows of methods Aegis does not run
(LoRA that also trains the embeddings, multi-node) are listed and left out.
"""

from __future__ import annotations

import math
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from scipy.optimize import least_squares
from transformers import LlamaConfig

import tools.plan.calibration as calibration
from tools.core.spec import TrainingSpec
from tools.inputs.dataset import DatasetStats
from tools.inputs.model_config import model_stats
from tools.plan.estimator import estimate, startup_seconds
from tools.plan.memory import ScriptTraits

DATA = Path(__file__).resolve().parent / "published" / "qwen_readme.yaml"
HELD_OUT_MODELS = ("qwen-7b",)
SKIPPED_METHODS = {"lora_emb": "also trains the embeddings and LM head, which Aegis's LoRA does not"}
# Qwen's LoRA targets c_attn (q, k and v fused: hidden -> 3 x hidden), c_proj, w1 and w2. A fused c_attn adapter
# holds r x (h + 3h) weights, as q_proj and k_proj together do (r x 2h each); adapting v_proj as well would count
# r x 2h more per layer than Qwen trained (12% more adapter weights, and their optimizer states).
QWEN_LORA_TARGETS = ["q_proj", "k_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class Point:
    model: str
    method: str
    gpus: int
    seq_len: int
    measured_gb: float
    measured_s: float
    held_out: bool


@dataclass(frozen=True)
class Compared:
    point: Point
    estimated_gb: float
    estimated_s: float

    @property
    def memory_error(self) -> float:
        return self.estimated_gb / self.point.measured_gb - 1

    @property
    def time_error(self) -> float:
        return self.estimated_s / self.point.measured_s - 1


def source() -> str:
    return str(yaml.safe_load(DATA.read_text(encoding="utf-8"))["source"])


def load_points() -> tuple[list[Point], list[str]]:
    raw = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    points, skipped = [], []
    for row in raw["rows"]:
        if row.get("nodes", 1) > 1 or row["method"] in SKIPPED_METHODS:
            why = SKIPPED_METHODS.get(row["method"], "multi-node")
            skipped.append(f"{row['model']} {row['method']} ({why})")
            continue
        for length, pair in zip(raw["lengths"], row["points"], strict=True):
            if pair is None:
                continue
            points.append(
                Point(
                    model=row["model"],
                    method=row["method"],
                    gpus=row["gpus"],
                    seq_len=length,
                    measured_gb=float(pair[0]),
                    measured_s=float(pair[1]),
                    held_out=row["model"] in HELD_OUT_MODELS,
                )
            )
    return points, skipped


def model_config(name: str) -> Any:
    """A Qwen (v1) model as a Llama-shaped config with the same weights: the parameter counts and shapes match
    (its fused c_attn is q, k and v; its MLP is w1, w2 and c_proj), its code (remote) is not needed for that."""
    shape = yaml.safe_load(DATA.read_text(encoding="utf-8"))["models"][name]
    return LlamaConfig(
        hidden_size=shape["hidden"],
        intermediate_size=shape["intermediate"] // 2,
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["heads"],
        vocab_size=shape["vocab"],
        tie_word_embeddings=False,
        max_position_embeddings=8192,
    )


# How Qwen's finetune.py ran each method (peft<0.8, as Qwen's README pins it), in the estimator's terms:
# - lora: HF Trainer with --bf16 and no DeepSpeed, so torch autocast, whose cross_entropy runs in fp32; peft<0.8
#   casts the adapters to the base weights' dtype (bf16) and torch's AdamW keeps its moments in the weights' dtype,
#   so adapters, gradients and moments are all bf16: the spec's precision "bf16_pure".
# - qlora: --fp16 under DeepSpeed ZeRO-2 (finetune_qlora_single_gpu.sh): DeepSpeed runs no autocast, so the loss
#   stays 16-bit; its GPTQ Int4 checkpoint is left in 16-bit by peft (no kbit upcast); fp32 master adapters and an
#   fp32 copy of every gradient at the step (ZeRO-2's partition).
# - full and lora_zero3: --bf16 under DeepSpeed ZeRO-3 (finetune_ds.sh, "we use DeepSpeed ZeRO 3 in this script";
#   the 72B LoRA rows with ds_config_zero3.json): 16-bit loss, fp32 master weights, and the step takes one
#   sub-group of sub_group_size = 1e9 weights at a time (finetune/ds_config_zero3.json).
#   ZeRO-3 gathers module by module in 16-bit, so no root unit stays whole.
ZERO3 = ScriptTraits(loss_upcast=False, optimizer_step_weights=1e9, gather_bytes=2.0, gathers_root=False)
REFERENCE_SCRIPTS = {
    "lora": ScriptTraits(loss_upcast=True),
    "qlora": ScriptTraits(kbit_upcast=False, loss_upcast=False),
    "full": ZERO3,
    "lora_zero3": ZERO3,
}


def spec_of(point: Point) -> TrainingSpec:
    method = {"lora": "lora", "qlora": "qlora", "full": "full_finetune", "lora_zero3": "lora"}[point.method]
    return TrainingSpec(
        model_name=f"Qwen/{point.model}",
        dataset_path="published.jsonl",
        method=method,
        micro_batch_size=1,
        gradient_accumulation_steps=8,
        seq_len=point.seq_len,
        packing=False,
        gradient_checkpointing=True,
        lora_r=64,
        lora_alpha=16,
        lora_target_modules=QWEN_LORA_TARGETS,
        num_epochs=1,
        max_steps=1,
        eval_split=0.0,
        target_gpu="a100-80gb",
        num_gpus=point.gpus,
        sharding="fsdp" if point.gpus > 1 else "none",
        precision="bf16_pure" if point.method == "lora" else "bf16",
    )


def compare(point: Point) -> Compared:
    spec = spec_of(point)
    rows = 8 * point.gpus
    data = DatasetStats(
        rows=rows,
        format="text",
        tokens=rows * point.seq_len,
        mean_tokens_per_row=point.seq_len,
        max_tokens_per_row=point.seq_len,
        truncated_rows=0,
        seq_len=point.seq_len,
        approximate=False,
        tokenizer="published",
    )
    config = model_config(point.model)
    est = estimate(spec, dataset_stats=data, model_config=config, script=REFERENCE_SCRIPTS[point.method])
    startup = startup_seconds(model_stats(config), "a100-80gb")
    seconds = est.cost_breakdown.step_seconds or (est.cost_breakdown.estimated_seconds - startup)
    return Compared(point, est.estimated_vram_gb * point.gpus, seconds)


def summary(rows: list[Compared]) -> dict[str, float]:
    if not rows:
        return {}
    time = [abs(r.time_error) for r in rows]
    memory = [abs(r.memory_error) for r in rows]
    return {
        "points": len(rows),
        "time_median": statistics.median(time),
        "time_worst": max(time),
        "memory_median": statistics.median(memory),
        "memory_worst": max(memory),
    }


def table(rows: list[Compared]) -> str:
    lines = [
        "| set | model | method | GPUs | seq | memory GB meas/est (err) | s/step meas/est (err) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = r.point
        lines.append(
            f"| {'held-out' if p.held_out else 'calibration'} | {p.model} | {p.method} | {p.gpus} | {p.seq_len} | "
            f"{p.measured_gb:.1f} / {r.estimated_gb:.1f} ({r.memory_error:+.0%}) | "
            f"{p.measured_s:.2f} / {r.estimated_s:.2f} ({r.time_error:+.0%}) |"
        )
    return "\n".join(lines)


def log_errors(rows: list[Compared]) -> list[float]:
    """Residuals for a fit: log ratios, so a 2x miss counts the same above and below."""
    return [math.log(r.estimated_s / r.point.measured_s) for r in rows] + [
        math.log(r.estimated_gb / r.point.measured_gb) for r in rows
    ]


TIME_FIT = (
    "gpu_peak_utilisation",
    "gpu_half_work",
    "gpu_layer_pass_s",
    "gpu_step_s",
    "qlora_dequant_bytes_per_weight",
    "exposed_communication",
    "overlap_power",
)
MEMORY_FIT = ("loss_logits_copies", "fragmentation", "state_overhead", "cuda_context_gb")


def fit(points: list[Point], names: tuple[str, ...], kind: str) -> dict[str, float]:
    """Least squares on the log errors (of `kind`: time or memory) of the calibration points only."""
    start = [getattr(calibration.CALIBRATION, n) for n in names]
    calibration_points = [p for p in points if not p.held_out]

    def residuals(values: list[float]) -> list[float]:
        _set(calibration, dict(zip(names, values, strict=True)))
        rows = [compare(p) for p in calibration_points]
        if kind == "time":
            return [math.log(r.estimated_s / r.point.measured_s) for r in rows]
        return [math.log(r.estimated_gb / r.point.measured_gb) for r in rows]

    result = least_squares(residuals, start, bounds=(_lower(names), _upper(names)))
    fitted = dict(zip(names, (float(v) for v in result.x), strict=True))
    _set(calibration, fitted)
    return fitted


def _set(module: Any, values: dict[str, float]) -> None:
    """Swap the constants in every module that bound CALIBRATION at import (fitting only; never in aegis)."""
    module.CALIBRATION = replace(module.CALIBRATION, **values)
    for name in ("tools.plan.timing", "tools.plan.memory", "tools.plan.estimator"):
        if name in sys.modules:
            sys.modules[name].CALIBRATION = module.CALIBRATION


def _lower(names: tuple[str, ...]) -> list[float]:
    floors = {"overlap_power": 1.0, "gpu_peak_utilisation": 0.05, "exposed_communication": 0.0}
    return [floors.get(n, 1e-6) for n in names]


def _upper(names: tuple[str, ...]) -> list[float]:
    ceilings = {"gpu_peak_utilisation": 1.0, "exposed_communication": 1.0, "overlap_power": 8.0, "fragmentation": 1.0}
    return [ceilings.get(n, 1e4) for n in names]
