"""The healing rules of SPEC.md, least invasive first, and the refusals that keep retries bounded."""

from __future__ import annotations

import pytest

from tools.core.errors import GuardRefusal
from tools.core.spec import TrainingSpec
from tools.plan.remediation import plan_remediation


def spec(**kw) -> TrainingSpec:
    return TrainingSpec(model_name="tiny", dataset_path="data.jsonl", **kw)


def heal(s: TrainingSpec, failure: str, retry: int = 0, max_retries: int = 3):
    return plan_remediation(s, failure, retry_count=retry, max_retries=max_retries)


def test_oom_halves_micro_batch_and_keeps_effective_batch():
    s = spec(micro_batch_size=8, gradient_accumulation_steps=2)
    plan = heal(s, "oom")
    assert plan.new_spec.micro_batch_size == 4 and plan.new_spec.gradient_accumulation_steps == 4
    assert plan.new_spec.effective_batch_size == s.effective_batch_size == 16
    assert plan.changes == {"micro_batch_size": (8, 4), "gradient_accumulation_steps": (2, 4)}
    assert s.micro_batch_size == 8  # the old spec is untouched
    odd = heal(spec(micro_batch_size=3), "oom").new_spec
    assert (odd.micro_batch_size, odd.gradient_accumulation_steps) == (1, 3)


def test_oom_chain_at_batch_one_on_a_gpu():
    s = spec(method="full_finetune", micro_batch_size=2, target_gpu="a10g")
    seen = []
    for retry in range(5):
        try:
            plan = heal(s, "oom", retry=retry, max_retries=10)
        except GuardRefusal as exc:
            assert "gradient checkpointing already on" in str(exc)
            break
        seen.append(plan.changes)
        s = plan.new_spec
    assert seen == [
        {"micro_batch_size": (2, 1), "gradient_accumulation_steps": (1, 2)},
        {"method": ("full_finetune", "lora")},
        {"method": ("lora", "qlora")},
        {"gradient_checkpointing": (False, True)},
    ]


def test_oom_lora_on_cpu_skips_qlora():
    plan = heal(spec(method="lora", micro_batch_size=1, target_gpu="cpu"), "oom")
    assert plan.changes == {"gradient_checkpointing": (False, True)}


def test_nan_loss_halves_learning_rate_only():
    plan = heal(spec(learning_rate=2e-4, micro_batch_size=4), "nan_loss")
    assert plan.changes == {"learning_rate": (2e-4, 1e-4)}
    assert plan.new_spec.micro_batch_size == 4 and "NaN" in plan.explanation


def test_other_halves_batch_then_refuses_at_one():
    plan = heal(spec(micro_batch_size=4), "other")
    assert plan.changes["micro_batch_size"] == (4, 2)
    with pytest.raises(GuardRefusal, match="no batch to halve"):
        heal(spec(micro_batch_size=1), "other")


@pytest.mark.parametrize("failure", ["bad_data", "unsupported", "missing_dependency", "interrupted", "timeout"])
def test_failures_a_retry_cannot_fix_are_refused(failure):
    with pytest.raises(GuardRefusal, match=f"'{failure}' is not healed by retrying"):
        heal(spec(micro_batch_size=4), failure)


def test_retry_bound_is_enforced_before_anything_else():
    with pytest.raises(GuardRefusal, match="3 retries already made, max_retries is 3"):
        heal(spec(micro_batch_size=8), "oom", retry=3, max_retries=3)
    with pytest.raises(GuardRefusal, match="max_retries is 0"):
        heal(spec(), "nan_loss", retry=0, max_retries=0)
    assert heal(spec(micro_batch_size=8), "oom", retry=2, max_retries=3).new_spec.micro_batch_size == 4


def test_accumulation_is_clamped_to_the_spec_bound():
    plan = heal(spec(micro_batch_size=4, gradient_accumulation_steps=1024), "oom")
    assert plan.new_spec.gradient_accumulation_steps == 1024
