"""How long one optimizer step takes on a GPU, term by term, from the model's shapes and the GPU's catalog figures.

A step is ``gradient_accumulation_steps`` micro-batches and one optimizer update. A micro-batch of T tokens:

- matmuls: forward 2·M·T FLOPs for M matmul weights; backward 4·M·T when every weight trains (activation and
  weight gradients), 2·M·T when they are frozen (LoRA, QLoRA: activation gradients only) plus 6 FLOPs per
  adapter weight per token; gradient checkpointing runs the forward again;
- attention: causal kernels (SDPA, flash) compute half the score matrix: 2·layers·T·seq·hidden forward, and the
  flash backward about 2.5 times that (it recomputes the scores);
- all of it at the GPU's dense bf16 peak times a utilisation that grows with the work of one matmul (tokens per
  micro-batch × hidden width): u = u_max · w / (w + w_half): small micro-batches leave a GPU mostly idle;
- a fixed cost per layer and pass (kernel launches, norms, activations, the Python between them);
- QLoRA: every 4-bit weight is dequantised to 16 bits on each pass, bound by memory bandwidth, so the cost
  scales with the weights, not the tokens: it dominates at short sequences and vanishes at long ones;
- FSDP (full shard): each pass gathers the weights from the other GPUs, and gradients are reduce-scattered.

A step adds the optimizer update (the trainable state read and written once, memory bound), a fixed per-step
cost, and with plain data parallel the gradient all-reduce. Only the share of communication that does not hide
behind compute counts. Every constant is in tools/plan/calibration.py with its source.
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.core.catalog import GPU
from tools.core.spec import TrainingSpec
from tools.inputs.model_config import ModelStats
from tools.plan.calibration import CALIBRATION

GB = 1e9


@dataclass(frozen=True)
class StepTime:
    """One optimizer step on one GPU (all GPUs step together), with what it is made of."""

    seconds: float
    micro_seconds: float
    flops: float  # per step, per GPU
    utilisation: float
    compute_s: float
    overhead_s: float
    dequantise_s: float
    communication_s: float
    optimizer_s: float


def utilisation(tokens: int, hidden: int) -> float:
    """The share of the dense peak a micro-batch reaches: more work per matmul keeps more of the GPU busy."""
    cal = CALIBRATION
    work = tokens * hidden / 1e6
    return cal.gpu_peak_utilisation * work / (work + cal.gpu_half_work)


def micro_flops(spec: TrainingSpec, stats: ModelStats, trainable: int) -> float:
    """FLOPs of one micro-batch: forward, backward, and the recomputed forward under gradient checkpointing."""
    tokens = spec.micro_batch_size * spec.seq_len
    recompute = 1.0 if spec.gradient_checkpointing else 0.0
    matmul_forward = 2.0 * stats.matmul_params * tokens
    attention_forward = 2.0 * stats.num_layers * tokens * spec.seq_len * stats.hidden_size
    if spec.method == "full_finetune":
        matmuls = matmul_forward * (1.0 + 2.0 + recompute)
    else:
        matmuls = matmul_forward * (1.0 + 1.0 + recompute) + 6.0 * trainable * tokens
    attention = attention_forward * (1.0 + CALIBRATION.attention_backward_factor + recompute)
    return matmuls + attention


def step_time(
    spec: TrainingSpec, gpu: GPU, stats: ModelStats, trainable: int, *, throughput_factor: float, sharded: bool
) -> StepTime:
    """The seconds of one optimizer step on a GPU, and its parts."""
    cal = CALIBRATION
    tokens = spec.micro_batch_size * spec.seq_len
    passes = 3.0 if spec.gradient_checkpointing else 2.0
    flops = micro_flops(spec, stats, trainable)
    util = utilisation(tokens, stats.hidden_size)
    compute = flops / (gpu.bf16_tflops * 1e12 * util * throughput_factor)
    overhead = cal.gpu_layer_pass_s * stats.num_layers * passes
    bandwidth = (gpu.memory_bandwidth_gb_s or 1.0) * GB
    dequantise = 0.0
    if spec.method == "qlora":
        dequantise = cal.qlora_dequant_bytes_per_weight * stats.quantizable_params * passes / bandwidth
    gathers = _gathers_s(spec, gpu, stats, trainable, passes) if sharded else 0.0
    # The host launches kernels while the GPU computes: fixed costs hide behind long kernels and add to short ones.
    power = cal.overlap_power
    micro = (compute**power + (overhead + dequantise) ** power) ** (1.0 / power) + gathers
    optimizer = cal.optimizer_bytes_per_trainable * trainable / bandwidth
    all_reduce = 0.0 if sharded else _all_reduce_s(spec, gpu, trainable)
    steps = spec.gradient_accumulation_steps
    seconds = steps * micro + optimizer + all_reduce + cal.gpu_step_s
    return StepTime(
        seconds=seconds,
        micro_seconds=micro,
        flops=flops * steps,
        utilisation=util,
        compute_s=compute * steps,
        overhead_s=overhead * steps + cal.gpu_step_s,
        dequantise_s=dequantise * steps,
        communication_s=gathers * steps + all_reduce,
        optimizer_s=optimizer,
    )


def _link(gpu: GPU) -> float:
    return (gpu.link_gb_s or 1.0) * GB * CALIBRATION.link_efficiency


def _gathers_s(spec: TrainingSpec, gpu: GPU, stats: ModelStats, trainable: int, passes: float) -> float:
    """FSDP per micro-batch: the 16-bit weights gathered on each pass, the gradients reduce-scattered, exposed share."""
    share = (spec.num_gpus - 1) / spec.num_gpus
    gathered = stats.total_params * 2.0 * passes
    scattered = trainable * 4.0
    return CALIBRATION.exposed_communication * share * (gathered + scattered) / _link(gpu)


def _all_reduce_s(spec: TrainingSpec, gpu: GPU, trainable: int) -> float:
    """Data parallel per step: a ring all-reduce of the fp32 gradients (each GPU sends and receives 2(n-1)/n)."""
    if spec.num_gpus < 2:
        return 0.0
    share = 2.0 * (spec.num_gpus - 1) / spec.num_gpus
    return CALIBRATION.exposed_communication * share * trainable * 4.0 / _link(gpu)
