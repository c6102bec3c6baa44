"""Cost, time and memory of a fine-tuning job, before anything runs.

``estimate`` is a pure function of the spec, the GPU, the dataset's token statistics and the model's
config; it reads nothing (the job's quote, ``tools.job.quoting``, reads the inputs once).

Time: FLOPs / effective throughput + a startup allowance. Training FLOPs per token follow the usual
accounting (forward 2N, backward 4N with N the matmul parameters): full fine-tuning 6N; LoRA/QLoRA 4N
(activation gradients flow through the frozen weights, weight gradients only for the adapters, 6 per
adapter parameter), plus the attention score term 12·layers·hidden·seq_len (2/3 of it for LoRA).
Gradient checkpointing re-runs the forward pass (+2N and the forward third of attention).

Memory (per GPU, data parallel replicates everything): weights + gradients + AdamW states + activations
(Korthikanti et al. 2022, 34·hidden bytes per token per layer in 16-bit; the 5·heads·seq score term is
left out because transformers uses fused SDPA attention, which never stores the score matrix) + logits
+ overhead. Bytes per parameter are explicit in ``_memory_gb``. Beside it: the host RAM of the training
process (``_host_ram_gb``) and the peak memory of the eval phase (``_eval_memory_gb``).

Every tunable number lives in ``Calibration`` so the benchmark can fit them to measured runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tools.core.catalog import GPU, get_gpu
from tools.core.measured import MeasuredTime
from tools.core.spec import CostBreakdown, CostEstimate, TrainingSpec
from tools.inputs.dataset import DatasetStats
from tools.inputs.model_config import ModelStats, default_lora_targets, lora_trainable_params, model_stats
from tools.plan.calibration import CALIBRATION
from tools.plan.memory import (
    AEGIS_SCRIPT,
    Precision,
    ScriptTraits,
    checkpoint_dtype,
    eval_memory_gb,
    host_ram_gb,
    memory_gb,
    precision,
)
from tools.plan.timing import micro_flops, step_time, utilisation

GB = 1e9


def startup_seconds(stats: ModelStats, gpu_name: str) -> float:
    """Fixed time of every run, independent of the data: start, imports, reading the checkpoint (2 bytes/param)."""
    cal = CALIBRATION
    base = cal.startup_base_s_cpu if gpu_name == "cpu" else cal.startup_base_s_gpu
    return base + stats.total_params * 2 / GB / cal.load_bandwidth_gb_s


def _trainable(spec: TrainingSpec, config: Any) -> int:
    if spec.method == "full_finetune":
        return model_stats(config).total_params
    targets = spec.lora_target_modules or default_lora_targets(config)
    return lora_trainable_params(config, targets, spec.lora_r)


@dataclass(frozen=True)
class _Schedule:
    """How the data becomes steps: rows split, sequences per epoch, steps, and the tokens they process."""

    train_rows: int
    eval_rows: int
    per_step: int
    tokens_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    processed_tokens: int
    eval_tokens: int


def _schedule(spec: TrainingSpec, data: DatasetStats, num_gpus: int) -> _Schedule:
    rows = data.rows
    eval_rows = 0 if spec.eval_dataset_path else math.ceil(rows * spec.eval_split)
    train_rows = max(1, rows - eval_rows)
    train_tokens = round(data.tokens * train_rows / rows)
    per_step = spec.micro_batch_size * spec.gradient_accumulation_steps * num_gpus
    if spec.packing:  # rows are concatenated into full seq_len sequences: no padding
        tokens_per_epoch = train_tokens
        sequences = max(1, math.ceil(train_tokens / spec.seq_len))
    else:  # every row is padded to seq_len
        tokens_per_epoch = train_rows * spec.seq_len
        sequences = train_rows
    steps_per_epoch = math.ceil(sequences / per_step)
    total_steps = steps_per_epoch * spec.num_epochs
    if spec.max_steps is not None and spec.max_steps < total_steps:
        total_steps = spec.max_steps
    processed_sequences = min(total_steps * per_step, sequences * spec.num_epochs)
    epochs_run = min(spec.num_epochs, math.ceil(total_steps / steps_per_epoch))
    return _Schedule(
        train_rows=train_rows,
        eval_rows=eval_rows,
        per_step=per_step,
        tokens_per_epoch=tokens_per_epoch,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        processed_tokens=min(processed_sequences * spec.seq_len, tokens_per_epoch * spec.num_epochs),
        eval_tokens=round(data.tokens * eval_rows / rows) * epochs_run,  # one forward pass over the split per epoch
    )


def _notes(
    spec: TrainingSpec, gpu: GPU, data: DatasetStats, stats: ModelStats, plan: _Schedule, vram: float
) -> list[str]:
    notes: list[str] = []
    if data.seq_len != spec.seq_len:
        notes.append(f"token counts were measured at seq_len {data.seq_len}, the spec uses {spec.seq_len}")
    if plan.total_steps < plan.steps_per_epoch * spec.num_epochs:
        notes.append(
            f"max_steps stops training after {plan.total_steps} of {plan.steps_per_epoch * spec.num_epochs} steps"
        )
    if vram > gpu.memory_gb:
        notes.append(f"does not fit: {vram:.1f} GB needed per GPU, {gpu.memory_gb:g} GB on {gpu.name}")
    if data.approximate:
        notes.append(f"token counts approximate: no tokenizer offline ({data.tokenizer})")
    if data.truncated_rows:
        notes.append(
            f"{data.truncated_rows} of {data.rows} rows are longer than seq_len {data.seq_len} and are truncated"
        )
    if stats.max_positions and spec.seq_len > stats.max_positions:
        notes.append(f"seq_len {spec.seq_len} exceeds the model's {stats.max_positions} positions")
    if spec.method == "qlora" and gpu.name == "cpu":
        notes.append("qlora needs bitsandbytes on a CUDA GPU; on cpu it cannot run as estimated")
    num_gpus = 1 if gpu.name == "cpu" else spec.num_gpus
    if num_gpus > 1:
        how = (
            "FSDP full shard: weights, gradients and optimizer states split"
            if spec.sharding == "fsdp"
            else ("data parallel: every GPU holds a full replica")
        )
        notes.append(f"{how} across {num_gpus} GPUs; memory is per GPU")
    return notes


def _time_notes(time: _Time, measured: MeasuredTime | None) -> list[str]:
    return [
        f"time includes {time.startup:.0f} s startup (process start and model load)",
        f"time per step {time.source}" if measured else "time modelled from FLOPs and calibrated constants",
    ]


@dataclass(frozen=True)
class _Time:
    flops: float
    tflops_effective: float
    utilisation: float
    startup: float
    seconds: float
    step_seconds: float | None
    source: str = "modelled"
    measured_precision: str | None = None

    def fields(self) -> dict[str, Any]:
        """The CostBreakdown fields that say how long, and how that is known."""
        return {
            "estimated_seconds": self.seconds,
            "flops": self.flops,
            "tflops_effective": self.tflops_effective,
            "utilisation": self.utilisation,
            "step_seconds": self.step_seconds,
            "time_source": self.source,
            "measured_precision": self.measured_precision,
        }


def _time(
    spec: TrainingSpec,
    gpu: GPU,
    stats: ModelStats,
    trainable: int,
    prec: Precision,
    plan: _Schedule,
    measured: MeasuredTime | None,
) -> _Time:
    """Startup, the planned steps, and the held-out forward passes. GPUs: tools/plan/timing.py's step model.

    cpu: FLOPs over the catalog's effective throughput, unless a probe of the real script measured the step.
    """
    cal = CALIBRATION
    startup = startup_seconds(stats, gpu.name)
    tokens = spec.micro_batch_size * spec.seq_len
    eval_flops = 2.0 * stats.matmul_params * plan.eval_tokens
    if measured is not None:
        # The evals are forward passes, at the FLOP rate the measured steps reached.
        step_flops = micro_flops(spec, stats, trainable) * spec.gradient_accumulation_steps
        tflops = step_flops / measured.step_seconds / 1e12
        running = plan.total_steps * measured.step_seconds + eval_flops / (tflops * 1e12)
        flops = step_flops / spec.gradient_accumulation_steps / tokens * plan.processed_tokens + eval_flops
        seconds = measured.startup_seconds + running
        return _Time(
            flops,
            tflops,
            1.0,
            measured.startup_seconds,
            seconds,
            measured.step_seconds,
            measured.source,
            measured.precision,
        )
    if gpu.name == "cpu":
        flops = micro_flops(spec, stats, trainable) / tokens * plan.processed_tokens + eval_flops
        tflops = gpu.bf16_tflops * cal.cpu_utilisation * prec.throughput_factor
        return _Time(flops, tflops, cal.cpu_utilisation, startup, flops / (tflops * 1e12) + startup, None)
    num_gpus = spec.num_gpus
    step = step_time(
        spec, gpu, stats, trainable, throughput_factor=prec.throughput_factor, sharded=spec.sharding == "fsdp"
    )
    evals = eval_flops / num_gpus / (gpu.bf16_tflops * 1e12 * utilisation(tokens, stats.hidden_size))
    running = plan.total_steps * step.seconds + evals
    flops = step.flops * plan.total_steps * num_gpus + eval_flops
    return _Time(flops, flops / running / 1e12 / num_gpus, step.utilisation, startup, running + startup, step.seconds)


def estimate(
    spec: TrainingSpec,
    gpu: str | None = None,
    *,
    dataset_stats: DatasetStats,
    model_config: Any,
    script: ScriptTraits = AEGIS_SCRIPT,
    measured: MeasuredTime | None = None,
    price_usd_per_sec: float | None = None,
) -> CostEstimate:
    """Price the spec on a GPU (default: its target) from its data's token statistics and the model's config.

    script: what the training script does beyond the spec; Aegis's own unless a benchmark describes another.
    measured: a probe's step and startup on the machine that will train (tools/run/probe.py), used over the model.
    price_usd_per_sec: what its backend bills a second, all devices together; default the catalog's per GPU."""
    gpu_info = get_gpu(gpu or spec.target_gpu)
    config, data = model_config, dataset_stats
    stats = model_stats(config)
    trainable = _trainable(spec, config)
    prec = precision(spec, gpu_info)
    num_gpus = 1 if gpu_info.name == "cpu" else spec.num_gpus
    plan = _schedule(spec, data, num_gpus)

    time = _time(spec, gpu_info, stats, trainable, prec, plan, measured)

    memory = memory_gb(spec, gpu_info, stats, trainable, prec, data, script=script)
    vram = sum(memory.values())
    notes = _notes(spec, gpu_info, data, stats, plan, vram) + _time_notes(time, measured)
    host = vram if gpu_info.name == "cpu" else host_ram_gb(spec, stats, prec, checkpoint_dtype(config), data, num_gpus)
    breakdown = CostBreakdown(
        gpu=gpu_info.name,
        num_gpus=num_gpus,
        gpu_price_usd_per_sec=gpu_info.price_usd_per_sec,
        gpu_memory_gb=gpu_info.memory_gb,
        effective_batch_size=plan.per_step,
        total_steps=plan.total_steps,
        dataset_rows=data.rows,
        train_rows=plan.train_rows,
        dataset_tokens=data.tokens,
        train_tokens_per_epoch=plan.tokens_per_epoch,
        tokens_approximate=data.approximate,
        tokenizer=data.tokenizer,
        total_params=stats.total_params,
        trainable_params=trainable,
        fits=vram <= gpu_info.memory_gb,
        dtype=("nf4 + " if spec.method == "qlora" else "") + prec.label,
        notes=notes,
        host_ram_gb=host,
        eval_memory_gb=eval_memory_gb(spec, stats, trainable, checkpoint_dtype(config), data),
        **memory,
        **time.fields(),
    )
    price = price_usd_per_sec if price_usd_per_sec is not None else gpu_info.price_usd_per_sec * num_gpus
    return CostEstimate(
        estimated_cost_usd=time.seconds * price,
        estimated_vram_gb=vram,
        estimated_duration_min=time.seconds / 60.0,
        cost_breakdown=breakdown,
    )
