"""The one precision rule: what 'auto' means and when bf16 gives way to fp16.

The host applies it with the catalog's word on the target GPU (to write config.json); the script applies
it again with what the process really got, so the two cannot disagree about the rule, only about the hardware.
"""

from __future__ import annotations

from pathlib import Path

PRECISIONS = ("auto", "bf16", "fp16", "fp32", "bf16_pure")


def cpu_supports_bf16(cpuinfo: str | None = None) -> bool:
    """bf16 matmuls are fast only with native instructions (avx512_bf16 or AMX); emulated they are slower."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        except OSError:
            return False
    return "avx512_bf16" in cpuinfo or "amx_bf16" in cpuinfo


def resolve_precision(requested: str, device: str, *, bf16_supported: bool) -> str:
    """'auto' is bf16 where the hardware has it, else fp16 on a GPU (with loss scaling) or fp32 on a CPU.

    A GPU without bf16 runs an explicit bf16 request as fp16; a CPU runs any explicit request as asked.
    """
    if requested == "auto":
        if bf16_supported:
            return "bf16"
        return "fp16" if device == "cuda" else "fp32"
    if requested == "bf16" and device == "cuda" and not bf16_supported:
        return "fp16"
    return requested


def device_supports_bf16(device: str) -> bool:
    """What this process's hardware offers: the GPU's own answer, or the CPU's instruction flags."""
    if device == "cuda":
        import torch

        return bool(torch.cuda.is_bf16_supported())
    return cpu_supports_bf16()
