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

from rich.table import Table

from tools.core.catalog import GPU, get_gpu
from tools.core.spec import BudgetPolicy, CostBreakdown, CostEstimate, TrainingSpec
from tools.inputs.dataset import DatasetStats, load_tokenizer_offline
from tools.inputs.dataset import dataset_stats as measure_dataset
from tools.inputs.model_config import (
    ModelStats,
    default_lora_targets,
    load_model_config,
    lora_trainable_params,
    model_stats,
)

GB = 1e9


@dataclass(frozen=True)
class Calibration:
    """Every empirical constant of the estimator, in one place, for bench/estimate_accuracy.py to fit."""

    # Model FLOPs utilisation of an HF Trainer fine-tune on a datacenter GPU (typically 30-45%).
    gpu_utilisation: float = 0.35
    # The catalog's cpu figure is already an effective, measured throughput.
    cpu_utilisation: float = 1.0
    # bitsandbytes dequantises every 4-bit weight on each matmul: QLoRA steps run about 1.3x slower.
    qlora_slowdown: float = 1.3
    # Pure fp32 matmuls run on CUDA cores, not tensor cores: roughly a quarter of the 16-bit rate.
    fp32_throughput_factor: float = 0.25
    # Data parallel: each GPU beyond the first adds 0.9 of a GPU (gradient all-reduce, stragglers).
    multi_gpu_efficiency: float = 0.9
    # Startup: container/process start and imports, then reading the checkpoint at this bandwidth.
    startup_base_s_gpu: float = 30.0
    # cpu: wall time minus the script's train_seconds (interpreter, imports, data, model load, save): 5.5-7.3 s
    # over 8 jobs (4M-135M params), median 5.8 (5.4 on a first pass). Measured by `python bench/estimate_accuracy.py`
    # on 2026-11-24, 2-core avx512_bf16 VM, torch 2.13 cpu, 1-min load 1.23 at start (bench/results/cpu-2026-11-24.md).
    startup_base_s_cpu: float = 5.5
    load_bandwidth_gb_s: float = 1.0
    # Activation bytes per token per layer per hidden unit in 16-bit (Korthikanti et al. 2022, no score term).
    activation_bytes_per_hidden: float = 34.0
    # fp32 logits for the loss plus their gradient (softmax output) at the peak of the backward pass.
    logits_copies: float = 2.0
    # 4-bit NF4 weights plus quantisation constants (absmax per 64-weight block): 4.5 bits per weight.
    qlora_bits_per_param: float = 4.5
    cuda_context_gb: float = 0.5
    # cpu: peak RSS of the script minus the estimate's weights..activations (+fragmentation): torch, transformers,
    # peft and datasets imported, allocator slack. Median 0.70 GB over the same 8 jobs, same command and run as above.
    cpu_process_gb: float = 0.70
    fragmentation: float = 0.10
    # Host RAM per token of the dataset in the training script: ids and labels as Python int lists, the packed rows
    # and the records they came from. Retained RSS of the script's own data stage on 40x copies of the bundled
    # datasets (579k-654k tokens): 100-111 B per token over two passes, medians 106 and 103.
    # `python bench/eval_memory.py`, 2026-11-25, 2-core avx512_bf16 VM (bench/results/eval-memory-cpu-2026-11-25.md).
    host_bytes_per_token: float = 106.0
    # Eval phase (tools/evals/model_evals.py in the aegis process, on the CPU of the machine that runs aegis). The process with
    # `aegis run`'s imports (agent graph, torch, transformers, peft), allocator slack and generation's KV cache:
    # eval peak RSS minus the terms below over 4 jobs (4M and 135M params, lora and full): 0.44-0.50, median 0.48 on a
    # first pass, 0.467 on the recorded one (same command). `aegis train` imports 0.04 GB less, `aegis ui` 0.12 more.
    eval_process_gb: float = 0.48
    # The tokenizer grows with its vocabulary: 3,835 entries keep 59 MB, 49,152 keep 99 MB (934 B per extra entry).
    tokenizer_bytes_per_vocab: float = 930.0
    # fp32 logits of one held-out row and cross_entropy's log-softmax of them, with the allocator's share: the
    # held-out pass peaks at 2.3-2.6 copies of one row's logits (SmolLM2, seq_len 256 and 512, two passes), median 2.4.
    eval_logits_copies: float = 2.4


CALIBRATION = Calibration()


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
    """Peak RAM of the eval phase: tools/evals/model_evals.py in the aegis process, on the CPU of the machine that runs aegis.

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


def estimate(
    spec: TrainingSpec,
    gpu: str | None = None,
    *,
    dataset_stats: DatasetStats | None = None,
    model_config: Any = None,
) -> CostEstimate:
    """Price the spec on a GPU (default: its target). Pure given dataset_stats and model_config; missing ones are read."""
    gpu_info = get_gpu(gpu or spec.target_gpu)
    config = (
        model_config
        if model_config is not None
        else load_model_config(spec.model_name, trust_remote_code=spec.trust_remote_code)
    )
    data = dataset_stats if dataset_stats is not None else read_dataset_stats(spec)
    stats = model_stats(config, trust_remote_code=spec.trust_remote_code)
    trainable = _trainable(spec, config)
    prec = _precision(spec, gpu_info)
    cal = CALIBRATION
    num_gpus = 1 if gpu_info.name == "cpu" else spec.num_gpus
    notes: list[str] = []

    if data.seq_len != spec.seq_len:
        notes.append(f"token counts were measured at seq_len {data.seq_len}, the spec uses {spec.seq_len}")
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
        notes.append(f"max_steps stops training after {total_steps} of {steps_per_epoch * spec.num_epochs} steps")
    processed_sequences = min(total_steps * per_step, sequences * spec.num_epochs)
    processed_tokens = min(processed_sequences * spec.seq_len, tokens_per_epoch * spec.num_epochs)
    epochs_run = min(spec.num_epochs, math.ceil(total_steps / steps_per_epoch))
    eval_tokens = round(data.tokens * eval_rows / rows) * epochs_run  # one forward pass over the split per epoch

    flops = _flops_per_token(spec, stats, trainable) * processed_tokens + 2.0 * stats.matmul_params * eval_tokens
    utilisation = cal.cpu_utilisation if gpu_info.name == "cpu" else cal.gpu_utilisation
    speedup = 1.0 + cal.multi_gpu_efficiency * (num_gpus - 1)
    slowdown = cal.qlora_slowdown if spec.method == "qlora" else 1.0
    tflops_effective = gpu_info.bf16_tflops * utilisation * prec.throughput_factor * speedup / slowdown
    startup = startup_seconds(stats, gpu_info.name)
    seconds = flops / (tflops_effective * 1e12) + startup
    cost = seconds * gpu_info.price_usd_per_sec * num_gpus

    memory = _memory_gb(spec, gpu_info, stats, trainable, prec, data)
    vram = sum(memory.values())
    ckpt_dtype = checkpoint_dtype(config)
    host_ram = vram if gpu_info.name == "cpu" else _host_ram_gb(spec, stats, prec, ckpt_dtype, data, num_gpus)
    fits = vram <= gpu_info.memory_gb
    dtype = f"nf4 + {prec.label}" if spec.method == "qlora" else prec.label
    if not fits:
        notes.append(f"does not fit: {vram:.1f} GB needed per GPU, {gpu_info.memory_gb:g} GB on {gpu_info.name}")
    if data.approximate:
        notes.append(f"token counts approximate: no tokenizer offline ({data.tokenizer})")
    if data.truncated_rows:
        notes.append(f"{data.truncated_rows} of {rows} rows are longer than seq_len {data.seq_len} and are truncated")
    if stats.max_positions and spec.seq_len > stats.max_positions:
        notes.append(f"seq_len {spec.seq_len} exceeds the model's {stats.max_positions} positions")
    if spec.method == "qlora" and gpu_info.name == "cpu":
        notes.append("qlora needs bitsandbytes on a CUDA GPU; on cpu it cannot run as estimated")
    if num_gpus > 1:
        notes.append(f"data parallel on {num_gpus} GPUs: memory is per GPU, time at {speedup:.2f}x one GPU")
    notes.append(f"time includes {startup:.0f} s startup (process start and model load)")

    breakdown = CostBreakdown(
        gpu=gpu_info.name,
        num_gpus=num_gpus,
        gpu_price_usd_per_sec=gpu_info.price_usd_per_sec,
        gpu_memory_gb=gpu_info.memory_gb,
        estimated_seconds=seconds,
        effective_batch_size=per_step,
        total_steps=total_steps,
        dataset_rows=rows,
        train_rows=train_rows,
        dataset_tokens=data.tokens,
        train_tokens_per_epoch=tokens_per_epoch,
        tokens_approximate=data.approximate,
        tokenizer=data.tokenizer,
        total_params=stats.total_params,
        trainable_params=trainable,
        flops=flops,
        tflops_effective=tflops_effective,
        utilisation=utilisation,
        fits=fits,
        dtype=dtype,
        notes=notes,
        host_ram_gb=host_ram,
        eval_memory_gb=_eval_memory_gb(spec, stats, trainable, ckpt_dtype, data),
        **memory,
    )
    return CostEstimate(
        estimated_cost_usd=cost,
        estimated_vram_gb=vram,
        estimated_duration_min=seconds / 60.0,
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


def _money(value: float) -> str:
    return f"${value:,.4f}" if value < 0.01 else f"${value:,.2f}"


def _duration(minutes: float) -> str:
    return f"{minutes:.1f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def _count(value: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{unit}"
    return str(int(value))


def _against_this_machine(needed_gb: float) -> str:
    """A RAM need beside this machine's total RAM: only the display may look at the machine, not the estimate."""
    import psutil

    total_gb = psutil.virtual_memory().total / GB
    text = f"{needed_gb:.2f} GB of {total_gb:.1f} GB RAM here"
    return text if needed_gb <= total_gb else f"[red]{text}: does not fit[/red]"


def _host_ram(b: CostBreakdown, needed_gb: float) -> str:
    """cpu: beside this machine's RAM. A GPU machine's RAM is not in the catalog, so only the need is shown."""
    if b.gpu == "cpu":
        return _against_this_machine(needed_gb) + " (training runs in RAM)"
    processes = f", {b.num_gpus} processes" if b.num_gpus > 1 else ""
    return f"{needed_gb:.2f} GB on the {b.gpu} machine{processes} (the catalog has no host RAM figure)"


def format_estimate_table(estimate: CostEstimate, policy: BudgetPolicy | None = None) -> Table:
    """The estimate as a table for the CLI, with the budget limits beside the cost when a policy is given."""
    b = estimate.cost_breakdown
    table = Table(title=f"Estimate on {b.num_gpus}x {b.gpu}" if b.num_gpus > 1 else f"Estimate on {b.gpu}")
    table.add_column("Item")
    table.add_column("Value", justify="right")
    table.add_row("Cost", _money(estimate.estimated_cost_usd))
    if policy is not None:
        table.add_row("Soft threshold (auto-approve)", _money(policy.soft_threshold_usd))
        table.add_row("Hard limit", _money(policy.max_budget_usd))
        over = estimate.estimated_cost_usd > policy.max_budget_usd
        table.add_row("Within hard limit", "[red]no[/red]" if over else "yes")
    table.add_row("Time", _duration(estimate.estimated_duration_min))
    table.add_row("Price", f"${b.gpu_price_usd_per_sec * 3600:.2f}/h per GPU")
    parts = (
        f"weights {b.weights_gb:.2f} + grads {b.gradients_gb:.2f} + optimizer {b.optimizer_gb:.2f} "
        f"+ activations {b.activations_gb:.2f} + overhead {b.overhead_gb:.2f}"
    )
    table.add_row("VRAM per GPU", f"{estimate.estimated_vram_gb:.2f} GB of {b.gpu_memory_gb:g} GB")
    table.add_row("VRAM parts (GB)", parts)
    table.add_row("Fits", "yes" if b.fits else "[red]no[/red]")
    if b.host_ram_gb is not None:
        table.add_row("Host RAM, training", _host_ram(b, b.host_ram_gb))
    if b.eval_memory_gb is not None:
        table.add_row("Memory, evals (CPU here)", _against_this_machine(b.eval_memory_gb))
    table.add_row("Precision", b.dtype)
    table.add_row("Steps", f"{b.total_steps:,} (effective batch {b.effective_batch_size})")
    approx = " (approx.)" if b.tokens_approximate else ""
    table.add_row("Dataset", f"{b.dataset_rows:,} rows, {b.dataset_tokens:,} tokens{approx}")
    table.add_row("Train tokens per epoch", f"{b.train_tokens_per_epoch:,} ({b.train_rows:,} rows)")
    table.add_row("Parameters", f"{_count(b.total_params)} total, {_count(b.trainable_params)} trainable")
    table.add_row("Compute", f"{b.flops:.3g} FLOPs at {b.tflops_effective:.3g} TFLOP/s effective")
    for note in b.notes:
        table.add_row("Note", note)
    return table
