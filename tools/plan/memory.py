"""Memory of a fine-tuning job, before anything runs: per GPU, on the training machine's host, and in the evals.

Per GPU: weights + gradients + optimizer states + activations (Korthikanti et al. 2022, 34·hidden bytes per token
per layer in 16-bit; the 5·heads·seq score term is left out because SDPA and flash attention never store the
score matrix) + logits (the loss path's copies) + overhead (CUDA context; the optimizer step's temporaries;
buffers and allocator slack on what churns, not on frozen weights). Bytes per parameter are explicit per method,
precision, optimizer and sharding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tools.core.catalog import GPU
from tools.core.spec import TrainingSpec
from tools.inputs.dataset import DatasetStats
from tools.inputs.model_config import ModelStats
from tools.plan.calibration import CALIBRATION

GB = 1e9


# Bytes per weight of the dtypes a checkpoint is stored in or a model is loaded in.
_DTYPE_BYTES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0}


@dataclass(frozen=True)
class Precision:
    label: str
    frozen_bytes: float  # per frozen weight (LoRA); for a full fine-tune, per weight of the model as it trains
    activation_scale: float  # relative to 16-bit activations
    throughput_factor: float
    frozen_dtype: str = "float32"  # the dtype the script loads LoRA's frozen weights in
    pure: bool = False  # bf16_pure: no fp32 master weights; gradients and optimizer states in bf16 too


def precision(spec: TrainingSpec, gpu: GPU) -> Precision:
    """The numeric regime the training script will use on this GPU."""
    cal = CALIBRATION
    if spec.precision == "bf16_pure":
        return Precision("bf16 (pure: no fp32 master weights)", 2.0, 1.0, 1.0, "bfloat16", pure=True)
    if spec.precision == "fp32":
        return Precision("fp32", 4.0, 2.0, 1.0 if gpu.name == "cpu" else cal.fp32_throughput_factor)
    if gpu.name == "cpu":  # fp32 weights, bf16 autocast; the calibrated cpu figure covers this regime
        return Precision("fp32 weights + bf16 autocast", 4.0, 1.0, 1.0)
    if spec.precision == "bf16" and not gpu.bf16_supported:
        return Precision("fp32 (bf16 unsupported)", 4.0, 2.0, cal.fp32_throughput_factor)
    half = "bf16" if spec.precision == "bf16" or (spec.precision == "auto" and gpu.bf16_supported) else "fp16"
    return Precision(half, 2.0, 1.0, 1.0, "bfloat16" if half == "bf16" else "float16")


def checkpoint_dtype(config: Any) -> str:
    """The dtype the checkpoint's weights are stored in, as its config says; float32 when it says nothing.

    float32 is what transformers assumes for a config without a dtype, and how the local models are saved.
    """
    value = getattr(config, "dtype", None)
    name = str(value).removeprefix("torch.") if value is not None else "float32"
    return name if name in _DTYPE_BYTES else "float32"


def _dataset_host_gb(data: DatasetStats) -> float:
    """The training script's copy of the dataset in RAM: records, token ids and labels, packed rows."""
    return data.tokens * CALIBRATION.host_bytes_per_token / GB


@dataclass(frozen=True)
class ScriptTraits:
    """What a training script does that the spec does not say. The default is Aegis's rendered script;
    bench/published.py describes the published reference runs (Qwen's finetune.py) with other values."""

    # QLoRA's non-quantized weights (embeddings, LM head, norms) are fp32, as peft's prepare_model_for_kbit_training
    # leaves them for bitsandbytes (our script); it leaves GPTQ models in 16-bit.
    kbit_upcast: bool = True
    # The loss runs on fp32 copies of 16-bit logits: transformers' ForCausalLMLoss upcasts (our script), as torch
    # autocast does for cross_entropy. DeepSpeed's fp16/bf16 engines run no autocast: their loss stays 16-bit.
    loss_upcast: bool = True
    # How many trainable weights (per GPU) the optimizer's step works on at once, each with a temporary of its state
    # dtype. None: all of them, as torch's foreach AdamW does on CUDA (our script) and DeepSpeed ZeRO-2 with its fp32
    # gradient partition; DeepSpeed ZeRO-3 takes one sub-group at a time (its sub_group_size).
    optimizer_step_weights: float | None = None
    # Under FSDP: the bytes per weight of a gathered unit (None: the weights' stored dtype, as FSDP2 with no
    # MixedPrecisionPolicy gathers them: our script), and whether the root unit (embeddings, LM head, final norm)
    # stays gathered through the step, as FSDP2's does; DeepSpeed ZeRO-3 fetches module by module in 16-bit.
    gather_bytes: float | None = None
    gathers_root: bool = True


AEGIS_SCRIPT = ScriptTraits()


def memory_gb(
    spec: TrainingSpec,
    gpu: GPU,
    stats: ModelStats,
    trainable: int,
    prec: Precision,
    data: DatasetStats,
    *,
    script: ScriptTraits = AEGIS_SCRIPT,
) -> dict[str, float]:
    """Per-GPU memory by part: weights, gradients, optimizer states, activations, overhead.

    FSDP (full shard) divides the weights, gradients and optimizer states by the GPUs and adds the unit being
    gathered. On cpu the memory is the process's RAM, so the overhead also holds the dataset the script keeps.
    """
    cal = CALIBRATION
    shards = spec.num_gpus if spec.sharding == "fsdp" else 1
    state = 2.0 if prec.pure else 4.0  # bytes of a trainable weight and of its gradient
    if spec.method == "full_finetune":
        frozen, trained = 0.0, stats.total_params * state
    elif spec.method == "lora":
        frozen, trained = stats.total_params * prec.frozen_bytes, trainable * state
    else:  # qlora: linear layers in 4 bits; peft's prepare_model_for_kbit_training makes the rest fp32
        quantized = stats.quantizable_params
        rest = 4.0 if script.kbit_upcast else 2.0
        frozen = quantized * cal.qlora_bits_per_param / 8 + (stats.total_params - quantized) * rest
        trained = trainable * state
    gathered = _gathered_bytes(spec, stats, prec, script) if shards > 1 else 0.0
    gradients = trainable * state / shards
    optimizer = trainable * _optimizer_bytes(spec, prec) / shards
    activations = _activation_bytes(spec, gpu, stats, prec, script)
    weights = (frozen + trained) / shards + gathered
    states = trained / shards + gradients + optimizer
    if gpu.name == "cpu":  # torch's AdamW steps one tensor at a time on the CPU: its temporaries are in the share
        fixed, state_slack = (cal.cpu_process_gb + _dataset_host_gb(data)) * GB, cal.cpu_state_overhead * states
    else:
        fixed = cal.cuda_context_gb * GB
        state_slack = cal.state_overhead * states + _step_temporaries(spec, prec, script, trainable / shards)
    overhead = fixed + state_slack + cal.fragmentation * activations  # allocator slack on what churns
    return {
        "weights_gb": weights / GB,
        "gradients_gb": gradients / GB,
        "optimizer_gb": optimizer / GB,
        "activations_gb": activations / GB,
        "overhead_gb": overhead / GB,
    }


def _gathered_bytes(spec: TrainingSpec, stats: ModelStats, prec: Precision, script: ScriptTraits) -> float:
    """Weights FSDP holds whole at once beside the shards: two decoder layers (the one running and the one
    prefetched) and, with FSDP2, the root unit, which is gathered for the whole forward and again for the whole
    backward. Full fine-tuning stores (and so gathers) fp32 master weights unless pure bf16; LoRA's frozen base is
    stored in the compute dtype."""
    stored = (2.0 if prec.pure else 4.0) if spec.method == "full_finetune" else prec.frozen_bytes
    per_weight = stored if script.gather_bytes is None else script.gather_bytes
    layers = 2.0 * stats.layer_params / max(stats.num_layers, 1)
    root = stats.total_params - stats.layer_params if script.gathers_root else 0.0
    return (layers + root) * per_weight


def _step_temporaries(spec: TrainingSpec, prec: Precision, script: ScriptTraits, weights: float) -> float:
    """Bytes of the optimizer step's temporaries on a GPU: torch's foreach AdamW makes one tensor the size of the
    states it steps (``exp_avg_sq_sqrt`` in torch/optim/adamw.py, in the state dtype); bitsandbytes' 8-bit AdamW
    steps each tensor in a fused kernel and makes none."""
    if spec.optimizer != "adamw":
        return 0.0
    at_once = weights if script.optimizer_step_weights is None else min(weights, script.optimizer_step_weights)
    return (2.0 if prec.pure else 4.0) * at_once


def _optimizer_bytes(spec: TrainingSpec, prec: Precision) -> float:
    """Bytes per trainable weight of the optimizer's state: AdamW's two moments."""
    if spec.optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        return 2.0 + 8.0 / 2048  # two 8-bit moments, and a float32 scale per block of 2048
    return 4.0 if prec.pure else 8.0


def _activation_bytes(spec: TrainingSpec, gpu: GPU, stats: ModelStats, prec: Precision, script: ScriptTraits) -> float:
    """Saved activations of one micro-batch (no score matrix: SDPA and flash attention never store it), and
    the logits at the loss: 16-bit (fp32 on the CPU) plus the loss path's copies."""
    cal = CALIBRATION
    tokens = spec.micro_batch_size * spec.seq_len
    per_layer = stats.hidden_size * cal.activation_bytes_per_hidden * prec.activation_scale
    if spec.gradient_checkpointing:  # one hidden state per layer boundary + one layer recomputed at a time
        layer_bytes = stats.num_layers * stats.hidden_size * 2.0 * prec.activation_scale + per_layer
    else:
        layer_bytes = stats.num_layers * per_layer
    return tokens * (layer_bytes + stats.vocab_size * logits_bytes(spec, gpu, prec, script))


def logits_bytes(spec: TrainingSpec, gpu: GPU, prec: Precision, script: ScriptTraits = AEGIS_SCRIPT) -> float:
    """Bytes per vocabulary entry per token at the loss, by loss path: the logits, the loss's own copy of them
    (an fp32 upcast, or a 16-bit shifted copy) and ``loss_logits_copies`` more in the loss's dtype (cross_entropy's
    log-softmax and, at the peak of the backward pass, its gradients).

    Logits that are fp32 already need no upcast, only the copies: on the CPU (fp32 weights), in fp32, and under our
    QLoRA, where prepare_model_for_kbit_training makes lm_head fp32.
    """
    copies = CALIBRATION.loss_logits_copies
    if gpu.name == "cpu" or prec.activation_scale > 1 or (spec.method == "qlora" and script.kbit_upcast):
        return 4.0 + 4.0 * copies
    loss_bytes = 4.0 if script.loss_upcast else 2.0
    return 2.0 + loss_bytes * (1.0 + copies)


def model_load_gb(params: int, ckpt_dtype: str, load_dtype: str | None) -> float:
    """Host RAM of from_pretrained once every weight has been read (by the load, `.to(device)` or a forward pass).

    transformers 5 opens every safetensors shard with mmap at once and reads the weights tensor by tensor; the
    pages it has read count in the process's RAM until loading ends. A weight loaded in the checkpoint's dtype is
    a view on those pages (zero-copy); in another dtype it is a converted copy beside them. load_dtype None: the
    weights go to the GPU as they are read (QLoRA's device_map), so only the pages count.
    """
    converted = 0.0 if load_dtype in (None, ckpt_dtype) else params * _DTYPE_BYTES[load_dtype]
    return (params * _DTYPE_BYTES[ckpt_dtype] + converted) / GB


def host_ram_gb(
    spec: TrainingSpec, stats: ModelStats, prec: Precision, ckpt_dtype: str, data: DatasetStats, num_gpus: int
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


def eval_memory_gb(spec: TrainingSpec, stats: ModelStats, trainable: int, ckpt_dtype: str, data: DatasetStats) -> float:
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
