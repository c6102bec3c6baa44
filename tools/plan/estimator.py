"""Cost, time and memory of a fine-tuning job, before anything runs.

``estimate`` is a pure function of the spec, the GPU, the dataset's token statistics and the model's
config; ``estimate_spec`` reads those inputs from disk (dataset, shipped config, cached tokenizer).

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
from tools.core.spec import CostBreakdown, CostEstimate, TrainingSpec
from tools.inputs.dataset import DatasetStats
from tools.inputs.dataset import dataset_stats as measure_dataset
from tools.inputs.model_config import (
    ModelStats,
    default_lora_targets,
    load_model_config,
    lora_trainable_params,
    model_stats,
)
from tools.inputs.tokenizer import load_tokenizer_offline
from tools.plan.calibration import CALIBRATION

GB = 1e9


# Bytes per weight of the dtypes a checkpoint is stored in or a model is loaded in.
_DTYPE_BYTES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0}


@dataclass(frozen=True)
class _Precision:
    label: str
    frozen_bytes: float  # per frozen (or, for full fine-tuning, master) weight
    activation_scale: float  # relative to 16-bit activations
    throughput_factor: float
    frozen_dtype: str = "float32"  # the dtype the script loads LoRA's frozen weights in


def _precision(spec: TrainingSpec, gpu: GPU) -> _Precision:
    """The numeric regime the training script will use on this GPU."""
    cal = CALIBRATION
    if spec.precision == "fp32":
        return _Precision("fp32", 4.0, 2.0, 1.0 if gpu.name == "cpu" else cal.fp32_throughput_factor)
    if gpu.name == "cpu":  # fp32 weights, bf16 autocast; the calibrated cpu figure covers this regime
        return _Precision("fp32 weights + bf16 autocast", 4.0, 1.0, 1.0)
    if spec.precision == "bf16" and not gpu.bf16_supported:
        return _Precision("fp32 (bf16 unsupported)", 4.0, 2.0, cal.fp32_throughput_factor)
    half = "bf16" if spec.precision == "bf16" or (spec.precision == "auto" and gpu.bf16_supported) else "fp16"
    return _Precision(half, 2.0, 1.0, 1.0, "bfloat16" if half == "bf16" else "float16")


def checkpoint_dtype(config: Any) -> str:
    """The dtype the checkpoint's weights are stored in, as its config says; float32 when it says nothing.

    float32 is what transformers assumes for a config without a dtype, and how the local models are saved.
    """
    value = getattr(config, "dtype", None)
    name = str(value).removeprefix("torch.") if value is not None else "float32"
    return name if name in _DTYPE_BYTES else "float32"


def startup_seconds(stats: ModelStats, gpu_name: str) -> float:
    """Fixed time of every run, independent of the data: start, imports, reading the checkpoint (2 bytes/param)."""
    cal = CALIBRATION
    base = cal.startup_base_s_cpu if gpu_name == "cpu" else cal.startup_base_s_gpu
    return base + stats.total_params * 2 / GB / cal.load_bandwidth_gb_s


def _trainable(spec: TrainingSpec, config: Any) -> int:
    if spec.method == "full_finetune":
        return model_stats(config, trust_remote_code=spec.trust_remote_code).total_params
    targets = spec.lora_target_modules or default_lora_targets(config, trust_remote_code=spec.trust_remote_code)
    return lora_trainable_params(config, targets, spec.lora_r, trust_remote_code=spec.trust_remote_code)


def _flops_per_token(spec: TrainingSpec, stats: ModelStats, trainable: int) -> float:
    n = stats.matmul_params
    attention = 12.0 * stats.num_layers * stats.hidden_size * spec.seq_len
    if spec.method == "full_finetune":
        per_token = 6.0 * n + attention
    else:
        per_token = 4.0 * n + attention * 2.0 / 3.0 + 6.0 * trainable
    if spec.gradient_checkpointing:
        per_token += 2.0 * n + attention / 3.0
    return per_token


def _dataset_host_gb(data: DatasetStats) -> float:
    """The training script's copy of the dataset in RAM: records, token ids and labels, packed rows."""
    return data.tokens * CALIBRATION.host_bytes_per_token / GB


def _memory_gb(
    spec: TrainingSpec, gpu: GPU, stats: ModelStats, trainable: int, prec: _Precision, data: DatasetStats
) -> dict[str, float]:
    """Per-GPU memory by part. Trainable weights, their gradients and AdamW's two moments are fp32.

    On cpu the memory is the process's RAM, so the overhead also holds the dataset the script keeps there.
    """
    cal = CALIBRATION
    if spec.method == "full_finetune":
        # Mixed precision keeps fp32 master weights (4 B) and fp32 gradients (4 B); 16-bit copies are
        # made on the fly by autocast and counted with the activations.
        weights = stats.total_params * 4.0
    elif spec.method == "lora":
        weights = stats.total_params * prec.frozen_bytes + trainable * 4.0
    else:  # qlora: linear layers in 4 bits, embeddings/lm_head/norms in 16-bit, adapters in fp32
        quantized = stats.quantizable_params
        weights = quantized * cal.qlora_bits_per_param / 8 + (stats.total_params - quantized) * 2.0 + trainable * 4.0
    gradients = trainable * 4.0
    optimizer = trainable * 8.0
    tokens = spec.micro_batch_size * spec.seq_len
    per_layer = stats.hidden_size * cal.activation_bytes_per_hidden * prec.activation_scale
    if spec.gradient_checkpointing:  # one hidden state per layer boundary + one layer recomputed at a time
        layer_bytes = stats.num_layers * stats.hidden_size * 2.0 * prec.activation_scale + per_layer
    else:
        layer_bytes = stats.num_layers * per_layer
    logits = stats.vocab_size * 4.0 * cal.logits_copies
    activations = tokens * (layer_bytes + logits)
    subtotal = (weights + gradients + optimizer + activations) / GB
    base = cal.cpu_process_gb + _dataset_host_gb(data) if gpu.name == "cpu" else cal.cuda_context_gb
    return {
        "weights_gb": weights / GB,
        "gradients_gb": gradients / GB,
        "optimizer_gb": optimizer / GB,
        "activations_gb": activations / GB,
        "overhead_gb": base + cal.fragmentation * subtotal,
    }


def model_load_gb(params: int, ckpt_dtype: str, load_dtype: str | None) -> float:
    """Host RAM of from_pretrained once every weight has been read (by the load, `.to(device)` or a forward pass).

    transformers 5 opens every safetensors shard with mmap at once and reads the weights tensor by tensor; the
    pages it has read count in the process's RAM until loading ends. A weight loaded in the checkpoint's dtype is
    a view on those pages (zero-copy); in another dtype it is a converted copy beside them. load_dtype None: the
    weights go to the GPU as they are read (QLoRA's device_map), so only the pages count.
    """
    converted = 0.0 if load_dtype in (None, ckpt_dtype) else params * _DTYPE_BYTES[load_dtype]
    return (params * _DTYPE_BYTES[ckpt_dtype] + converted) / GB


def _host_ram_gb(
    spec: TrainingSpec, stats: ModelStats, prec: _Precision, ckpt_dtype: str, data: DatasetStats, num_gpus: int
) -> float:
    """Peak host RAM of training on a GPU machine, all its processes together (torchrun runs one per GPU).

    Each process: the cpu process baseline (imports, allocator; measured on cpu, so the CUDA runtime's own host
    mappings are not in it), its copy of the dataset, and the model load, which is the peak: the script builds
    the model on the host in its load dtype (fp32 for full fine-tuning, the compute dtype for LoRA's frozen
    weights) and then moves it to the GPU.
    """
    if spec.method == "qlora":
        load_dtype = None
    else:
        load_dtype = "float32" if spec.method == "full_finetune" else prec.frozen_dtype
    loading = model_load_gb(stats.total_params, ckpt_dtype, load_dtype)
    return num_gpus * (CALIBRATION.cpu_process_gb + _dataset_host_gb(data) + loading)


def _eval_memory_gb(
    spec: TrainingSpec, stats: ModelStats, trainable: int, ckpt_dtype: str, data: DatasetStats
) -> float:
    """Peak RAM of the eval phase: tools/evals/models.py in the aegis process, on the CPU of the machine that runs aegis.

    It loads the tokenizer, the base model in fp32 and beside it the adapter (fp32) or, after a full fine-tune, the
    trained model (saved in fp32, so zero-copy). Rows go through one at a time: the activation peak is the fp32
    logits of the longest held-out row (assumed no longer than the training rows) and cross_entropy's log-softmax
    of them. Generation keeps only the last token's logits; its KV cache is small beside them (in the process term).
    """
    cal = CALIBRATION
    n = stats.total_params
    fixed = cal.eval_process_gb + stats.vocab_size * cal.tokenizer_bytes_per_vocab / GB
    loading = model_load_gb(n, ckpt_dtype, "float32")
    trained = n * 4.0 if spec.method == "full_finetune" else trainable * 4.0
    tokens = min(data.max_tokens_per_row, spec.seq_len)
    logits = tokens * stats.vocab_size * 4.0 * cal.eval_logits_copies
    return fixed + max(loading, (n * 4.0 + trained + logits) / GB)


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
    spec: TrainingSpec, gpu: GPU, data: DatasetStats, stats: ModelStats, plan: _Schedule, vram: float, speedup: float
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
        notes.append(f"data parallel on {num_gpus} GPUs: memory is per GPU, time at {speedup:.2f}x one GPU")
    return notes


@dataclass(frozen=True)
class _Time:
    flops: float
    tflops_effective: float
    utilisation: float
    speedup: float
    startup: float
    seconds: float


def _time(spec: TrainingSpec, gpu: GPU, stats: ModelStats, trainable: int, prec: _Precision, plan: _Schedule) -> _Time:
    """FLOPs of the planned steps and the held-out passes over an effective throughput, plus startup."""
    cal = CALIBRATION
    num_gpus = 1 if gpu.name == "cpu" else spec.num_gpus
    flops = _flops_per_token(spec, stats, trainable) * plan.processed_tokens
    flops += 2.0 * stats.matmul_params * plan.eval_tokens
    utilisation = cal.cpu_utilisation if gpu.name == "cpu" else cal.gpu_utilisation
    speedup = 1.0 + cal.multi_gpu_efficiency * (num_gpus - 1)
    slowdown = cal.qlora_slowdown if spec.method == "qlora" else 1.0
    tflops_effective = gpu.bf16_tflops * utilisation * prec.throughput_factor * speedup / slowdown
    startup = startup_seconds(stats, gpu.name)
    seconds = flops / (tflops_effective * 1e12) + startup
    return _Time(flops, tflops_effective, utilisation, speedup, startup, seconds)


def estimate(
    spec: TrainingSpec,
    gpu: str | None = None,
    *,
    dataset_stats: DatasetStats | None = None,
    model_config: Any = None,
) -> CostEstimate:
    """Price the spec on a GPU (default: its target). Pure given dataset_stats and model_config; missing ones are read."""
    gpu_info = get_gpu(gpu or spec.target_gpu)
    config = model_config or load_model_config(spec.model_name, trust_remote_code=spec.trust_remote_code)
    data = dataset_stats or read_dataset_stats(spec)
    stats = model_stats(config, trust_remote_code=spec.trust_remote_code)
    trainable = _trainable(spec, config)
    prec = _precision(spec, gpu_info)
    num_gpus = 1 if gpu_info.name == "cpu" else spec.num_gpus
    plan = _schedule(spec, data, num_gpus)

    time = _time(spec, gpu_info, stats, trainable, prec, plan)

    memory = _memory_gb(spec, gpu_info, stats, trainable, prec, data)
    vram = sum(memory.values())
    ckpt_dtype = checkpoint_dtype(config)
    notes = _notes(spec, gpu_info, data, stats, plan, vram, time.speedup)
    notes.append(f"time includes {time.startup:.0f} s startup (process start and model load)")
    breakdown = CostBreakdown(
        gpu=gpu_info.name,
        num_gpus=num_gpus,
        gpu_price_usd_per_sec=gpu_info.price_usd_per_sec,
        gpu_memory_gb=gpu_info.memory_gb,
        estimated_seconds=time.seconds,
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
        flops=time.flops,
        tflops_effective=time.tflops_effective,
        utilisation=time.utilisation,
        fits=vram <= gpu_info.memory_gb,
        dtype=f"nf4 + {prec.label}" if spec.method == "qlora" else prec.label,
        notes=notes,
        host_ram_gb=vram if gpu_info.name == "cpu" else _host_ram_gb(spec, stats, prec, ckpt_dtype, data, num_gpus),
        eval_memory_gb=_eval_memory_gb(spec, stats, trainable, ckpt_dtype, data),
        **memory,
    )
    return CostEstimate(
        estimated_cost_usd=time.seconds * gpu_info.price_usd_per_sec * num_gpus,
        estimated_vram_gb=vram,
        estimated_duration_min=time.seconds / 60.0,
        cost_breakdown=breakdown,
    )


def read_dataset_stats(spec: TrainingSpec) -> DatasetStats:
    """The spec's dataset measured with the model's tokenizer when it is on this machine, else approximately."""
    tokenizer = load_tokenizer_offline(spec.model_name)
    return measure_dataset(spec.dataset_path, spec.dataset_format, tokenizer, spec.seq_len)


def estimate_spec(spec: TrainingSpec, gpu: str | None = None) -> CostEstimate:
    """Estimate from the real inputs: the dataset measured with the model's tokenizer, the model's config."""
    return estimate(
        spec,
        gpu,
        dataset_stats=read_dataset_stats(spec),
        model_config=load_model_config(spec.model_name, trust_remote_code=spec.trust_remote_code),
    )
