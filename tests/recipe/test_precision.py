"""The one precision rule, shared by the renderer (catalog's word) and the script (the hardware's)."""

from __future__ import annotations

import pytest

from tools.core.spec import TrainingSpec
from tools.recipe.precision import cpu_supports_bf16, resolve_precision
from tools.run.render import decide_precision


@pytest.mark.parametrize(
    ("requested", "device", "bf16", "expected"),
    [
        ("auto", "cuda", True, "bf16"),
        ("auto", "cuda", False, "fp16"),
        ("auto", "cpu", True, "bf16"),
        ("auto", "cpu", False, "fp32"),
        ("bf16", "cuda", False, "fp16"),  # no bf16 on the GPU: fp16 with loss scaling
        ("bf16", "cpu", False, "bf16"),  # a CPU emulates it: slow, but what was asked
        ("fp32", "cuda", True, "fp32"),
        ("fp16", "cpu", True, "fp16"),
    ],
)
def test_the_rule(requested: str, device: str, bf16: bool, expected: str) -> None:
    assert resolve_precision(requested, device, bf16_supported=bf16) == expected


def test_cpu_flags() -> None:
    assert cpu_supports_bf16("flags : fpu avx512f avx512_bf16") and cpu_supports_bf16("flags : amx_bf16")
    assert not cpu_supports_bf16("flags : fpu sse avx2")


def test_the_renderer_applies_the_rule_with_the_catalog() -> None:
    def spec(gpu: str, precision: str = "auto") -> TrainingSpec:
        return TrainingSpec(model_name="m", dataset_path="d.jsonl", target_gpu=gpu, precision=precision)

    assert decide_precision(spec("t4"), "cuda") == "fp16" and decide_precision(spec("a10g"), "cuda") == "bf16"
    assert decide_precision(spec("t4", "bf16"), "cuda") == "fp16"
    assert decide_precision(spec("cpu"), "cpu") == ("bf16" if cpu_supports_bf16() else "fp32")
