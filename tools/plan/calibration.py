"""Every empirical constant of the estimator, in one place, with the measurement or source behind it."""

from __future__ import annotations

from dataclasses import dataclass


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
