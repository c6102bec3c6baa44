"""Heal a failed attempt with the least invasive change that addresses its cause, or refuse.

Pure: a failure class and a spec in, a new spec and what changed out. The retry bound lives here, not in a
prompt, so an agent that keeps asking still gets a refusal; failures a retry cannot fix are refused at once
because every retry costs money.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.core.errors import GuardRefusal
from tools.core.spec import TrainingSpec
from tools.core.status import FailureClass
from tools.plan.checkpoints import ResumePoint

MAX_ACCUMULATION = 1024  # TrainingSpec.gradient_accumulation_steps' upper bound

NOT_HEALABLE: dict[str, str] = {
    "bad_data": "the dataset itself is unusable; fix the data (the error names the row or column) and start again",
    "unsupported": "the spec asks for something this model or environment cannot do; change the spec",
    "missing_dependency": "a package the script needs is not installed; install it and start again",
    "interrupted": "a person stopped the run; it is not restarted automatically",
}
TIMEOUT_WITHOUT_CHECKPOINT = (
    "no checkpoint was saved before the time limit, and a smaller micro batch with more accumulation does the same "
    "work more slowly, so no automatic retry can beat the limit; raise the limit or lower max_steps / num_epochs"
)

# Failures a plan hands to remediate: the rules heal oom, nan_loss and other, and a timeout when a checkpoint
# lets the retry do only the steps left (else the refusal says why). The rest need a person's fix.
REMEDIATE_ON = frozenset({"oom", "nan_loss", "timeout", "other"})


class Remediation(BaseModel):
    """One healing step as the job and its report keep it: the failure it followed, the rule, what changed."""

    model_config = ConfigDict(extra="forbid")

    attempt: int = Field(ge=1, description="The failed attempt it followed.")
    failure: FailureClass
    rule: str
    changes: dict[str, list[Any]]
    explanation: str
    resume: ResumePoint | None = None


class RemediationPlan(BaseModel):
    """The spec for the next attempt, what changed and why."""

    model_config = ConfigDict(extra="forbid")

    new_spec: TrainingSpec
    changes: dict[str, tuple[Any, Any]]
    rule: str
    explanation: str


def plan_remediation(
    spec: TrainingSpec,
    failure_class: FailureClass,
    *,
    retry_count: int,
    max_retries: int,
    checkpoint_step: int | None = None,
) -> RemediationPlan:
    """The next spec to try after a failure of this class, or GuardRefusal when retrying cannot or may not help.

    checkpoint_step: the last good checkpoint of the failed attempt, if any; it makes a timeout healable.
    """
    if retry_count >= max_retries:
        raise GuardRefusal(
            f"retry limit reached: {retry_count} retries already made, max_retries is {max_retries}; "
            f"the last failure ({failure_class}) needs a person to look at it"
        )
    if failure_class in NOT_HEALABLE:
        raise GuardRefusal(f"'{failure_class}' is not healed by retrying: {NOT_HEALABLE[failure_class]}")
    if failure_class == "timeout":
        if not checkpoint_step:
            raise GuardRefusal(f"'timeout' is not healed by retrying: {TIMEOUT_WITHOUT_CHECKPOINT}")
        return _plan(
            spec,
            "timeout: resume from the last checkpoint",
            f"The attempt hit its time limit after a checkpoint at step {checkpoint_step}; the same spec resumes "
            "there, so the retry runs only the steps left",
        )
    if failure_class == "nan_loss":
        return _plan(
            spec,
            "nan_loss: halve learning_rate",
            "The loss became NaN, a sign of too large a step size",
            learning_rate=spec.learning_rate / 2,
        )
    if spec.micro_batch_size > 1:
        return _halve_batch(spec, failure_class)
    if failure_class != "oom":
        raise GuardRefusal(
            f"'{failure_class}' at micro_batch_size 1 leaves no batch to halve; read the error and change the spec"
        )
    return _shrink_memory(spec)


def _halve_batch(spec: TrainingSpec, failure_class: str) -> RemediationPlan:
    micro = spec.micro_batch_size // 2
    accumulation = min(MAX_ACCUMULATION, math.ceil(spec.micro_batch_size * spec.gradient_accumulation_steps / micro))
    why = "ran out of memory" if failure_class == "oom" else f"failed ({failure_class})"
    return _plan(
        spec,
        f"{failure_class}: halve micro_batch_size, double gradient_accumulation_steps",
        f"The attempt {why}; a smaller micro batch needs less activation memory, and more accumulation keeps the "
        f"effective batch at {micro * accumulation * spec.num_gpus} (was {spec.effective_batch_size})",
        micro_batch_size=micro,
        gradient_accumulation_steps=accumulation,
    )


def _shrink_memory(spec: TrainingSpec) -> RemediationPlan:
    """Out of memory at batch 1: train fewer parameters, then quantise the frozen ones, then recompute activations."""
    if spec.method == "full_finetune":
        return _plan(
            spec,
            "oom at batch 1: full_finetune → lora",
            "Out of memory at micro batch 1: LoRA trains small adapters, dropping the gradients and "
            "optimizer states of the full model",
            method="lora",
        )
    if spec.method == "lora" and spec.target_gpu != "cpu":  # 4-bit needs CUDA (bitsandbytes)
        return _plan(
            spec,
            "oom at batch 1: lora → qlora",
            "Out of memory at micro batch 1: QLoRA keeps the frozen weights in 4 bits, about a quarter of "
            "their bf16 size",
            method="qlora",
        )
    if not spec.gradient_checkpointing:
        return _plan(
            spec,
            f"oom at batch 1 with {spec.method}: enable gradient_checkpointing",
            "Out of memory at micro batch 1: gradient checkpointing keeps one activation per layer and "
            "recomputes the rest (about a third more compute)",
            gradient_checkpointing=True,
        )
    raise GuardRefusal(
        f"out of memory at micro batch 1 with {spec.method} and gradient checkpointing already on: no automatic "
        "fix is left; choose a GPU with more memory, a shorter seq_len or a smaller model"
    )


def _plan(spec: TrainingSpec, rule: str, explanation: str, **updates: Any) -> RemediationPlan:
    new_spec = TrainingSpec.model_validate({**spec.model_dump(), **updates})  # still a valid spec
    changes = {key: (getattr(spec, key), value) for key, value in updates.items()}
    return RemediationPlan(new_spec=new_spec, changes=changes, rule=rule, explanation=explanation)
