"""Every empirical constant of the estimator, in one place, with the measurement or source behind it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Calibration:
    """Every empirical constant of the estimator, in one place, for bench/estimate_accuracy.py to fit."""

    # -- GPU time (tools/plan/timing.py). FITTED on the calibration rows of the Qwen README's profiling table
    # (bench/published/qwen_readme.yaml: A100-80GB, flash attention 2, micro batch 1, accumulation 8) with
    # `python bench/estimate_accuracy.py --published --fit` on 2026-11-30 (42 rows: Qwen-1.8B, 14B, 72B); its
    # held-out rows (every Qwen-7B row, 15) are never fitted to. No GPU of our own was lent to measure on.
    # The QLoRA dequantisation term was fitted on Qwen's GPTQ Int4 kernels, not the bitsandbytes NF4 ours use.
    # The highest share of the dense bf16 peak a large micro-batch reaches.
    gpu_peak_utilisation: float = 0.630
    # Work of one matmul (tokens per micro-batch x hidden width, in millions) at which utilisation is half its peak.
    gpu_half_work: float = 1e-6  # fitted to its floor: at micro batch 1 x 256+ tokens every Qwen matmul is large
    # Fixed seconds per decoder layer and pass (forward, backward, recompute): launches, norms, activations, Python.
    gpu_layer_pass_s: float = 1e-6  # fitted to its floor: gpu_step_s carries the fixed cost in these rows
    # Fixed seconds per optimizer step: zero_grad, clipping, the scheduler, logging, the host between steps.
    gpu_step_s: float = 1.06
    # QLoRA: bytes moved per 4-bit weight per pass to dequantise it (read 0.5, write and read the 16-bit copy).
    qlora_dequant_bytes_per_weight: float = 24.2
    # FSDP gathers and the data-parallel all-reduce: the share of the transfer not hidden behind compute.
    exposed_communication: float = 0.99
    # How compute and the fixed per-pass costs combine: (c^p + f^p)^(1/p); 1 adds them, larger p nears max(c, f).
    overlap_power: float = 1.0  # fitted to its floor: the fixed costs add to compute
    # -- GPU time, not fitted: from the literature.
    # Flash attention 2's backward computes about 2.5x the forward's FLOPs (Dao 2023, FlashAttention-2, sec. 3).
    attention_backward_factor: float = 2.5
    # AdamW update: fp32 weight, gradient and two moments read and written: 32 bytes per trainable weight.
    optimizer_bytes_per_trainable: float = 32.0
    # Share of the link's one-way bandwidth a collective reaches (NCCL bus bandwidth on NVLink / PCIe, ~0.8).
    link_efficiency: float = 0.8
    # -- CPU time: the catalog's cpu figure is already an effective, measured throughput (and a probe measures
    # the real script on the real model before an estimate is shown, tools/run/probe.py).
    cpu_utilisation: float = 1.0
    # Pure fp32 matmuls run on CUDA cores, not tensor cores: roughly a quarter of the 16-bit rate.
    fp32_throughput_factor: float = 0.25
    # Startup: container/process start and imports, then reading the checkpoint at this bandwidth.
    startup_base_s_gpu: float = 30.0
    # cpu: wall time minus the script's train_seconds (interpreter, imports, data, model load, save): 5.5-7.3 s
    # over 8 jobs (4M-135M params), median 5.8 (5.4 on a first pass). Measured by `python bench/estimate_accuracy.py`
    # on 2026-11-24, 2-core avx512_bf16 VM, torch 2.13 cpu, 1-min load 1.23 at start (bench/results/cpu-2026-11-24.md).
    startup_base_s_cpu: float = 5.5
    load_bandwidth_gb_s: float = 1.0
    # Activation bytes per token per layer per hidden unit in 16-bit (Korthikanti et al. 2022, no score term).
    activation_bytes_per_hidden: float = 34.0
    # The loss path (tools/plan/memory.py logits_bytes): cross_entropy's log-softmax and, at the peak of the
    # backward pass, its gradients, in copies of the logits (in the loss's dtype) beside the logits themselves and
    # the loss's own copy of them. Between 1 (the forward's peak) and 2 (the backward's) if nothing is freed early.
    # FITTED as the GPU terms above.
    loss_logits_copies: float = 1.464
    # 4-bit NF4 with double quantisation (the script's bnb_4bit_use_double_quant=True): 4 bits, plus an 8-bit absmax
    # per 64 weights (0.125), plus a 32-bit constant per 256 such blocks (0.002): 4.127 bits per weight.
    qlora_bits_per_param: float = 4.127
    cuda_context_gb: float = 2.30  # FITTED (Qwen rows): CUDA context, cuBLAS and flash workspaces, NCCL buffers
    # cpu: the script's peak RSS minus the estimate's weights..activations (with fragmentation) is
    # cpu_process_gb + cpu_state_overhead x (trainable weights, gradients and optimizer states): torch, transformers,
    # peft and datasets imported, the allocator's slack; torch's AdamW steps one tensor at a time on the CPU, so its
    # temporaries are one tensor's, not one per weight as with CUDA's foreach kernels (_step_temporaries).
    # Least squares over the 8 jobs of `python bench/estimate_accuracy.py` on 2026-11-30 (2-core AMD EPYC,
    # avx512_bf16, torch 2.13 cpu; bench/results/cpu-2026-11-30.md).
    cpu_process_gb: float = 0.62
    cpu_state_overhead: float = 0.06
    # Allocator slack on what churns every step: the activations.
    fragmentation: float = 1e-6  # FITTED to its floor on the Qwen rows: PyTorch's caching allocator reuses blocks
    # Beside the trainable weights, their gradients and optimizer states, and beside the optimizer step's own
    # temporaries (tools/plan/memory.py _step_temporaries): flat buffers, communication buckets, allocator slack.
    state_overhead: float = 0.207  # FITTED (Qwen rows)
    # Host RAM per token of the dataset in the training script: ids and labels as Python int lists, the packed rows
    # and the records they came from. Retained RSS of the script's own data stage on 40x copies of the bundled
    # datasets (579k-654k tokens): 100-111 B per token over two passes, medians 106 and 103.
    # `python bench/eval_memory.py`, 2026-11-25, 2-core avx512_bf16 VM (bench/results/eval-memory-cpu-2026-11-25.md).
    host_bytes_per_token: float = 106.0
    # Eval phase (tools/evals/models.py in the aegis process, on the CPU of the machine that runs aegis). The process with
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
