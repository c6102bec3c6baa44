"""`aegis train SPEC --from RUN`: a new run that starts from a finished run's trained weights.

The parent's adapter (LoRA, QLoRA) is loaded into the new run's LoRA before its first step; a parent's full
weights become the new run's starting model. What cannot carry over is refused before anything is priced:
another base model, an adapter of another shape, or a full fine-tune from an adapter alone.
"""

from __future__ import annotations

from tools.core.errors import GuardRefusal
from tools.core.spec import TrainingSpec
from tools.inputs.local_models import resolve_model
from tools.job.state import JobState, WarmStart
from tools.use.runs import find_run

ADAPTER_METHODS = ("lora", "qlora")


def warm_start_from(ref: str, spec: TrainingSpec) -> WarmStart:
    """The finished run ``ref`` names, as the start of a run of ``spec``; refused in one line when it cannot be."""
    record = find_run(ref, trained=True)
    _, attempt = record.trained_attempt()
    final = record.final_dir()
    parent = record.require_spec()
    run = record.run_id
    if resolve_model(parent.model_name).name != resolve_model(spec.model_name).name:
        raise GuardRefusal(
            f"run {run} trained {parent.model_name}; this spec names {spec.model_name}: one model's trained weights "
            f"do not fit another. Set model_name: {parent.model_name} to build on it"
        )
    kind = "adapter" if parent.method in ADAPTER_METHODS else "model"
    if kind == "adapter":
        _same_adapter(run, parent, spec)
    return WarmStart(
        run_id=run,
        kind=kind,
        path=str(final),
        method=parent.method,
        model_name=parent.model_name,
        final_train_loss=attempt.final_train_loss,
    )


def _same_adapter(run: str, parent: TrainingSpec, spec: TrainingSpec) -> None:
    if spec.method not in ADAPTER_METHODS:
        raise GuardRefusal(
            f"run {run} trained a {parent.method} adapter, not full weights; a {spec.method} cannot start from an "
            "adapter alone. Use method lora or qlora to go on training that adapter"
        )
    if spec.lora_r != parent.lora_r:
        raise GuardRefusal(
            f"run {run}'s adapter has rank {parent.lora_r}; this spec asks lora_r {spec.lora_r}: the adapter's "
            f"weights would not fit. Set lora_r: {parent.lora_r}"
        )
    if spec.lora_target_modules != parent.lora_target_modules:
        raise GuardRefusal(
            f"run {run}'s adapter targets {parent.lora_target_modules or 'the default modules'}; this spec targets "
            f"{spec.lora_target_modules or 'the default modules'}: set lora_target_modules as the parent had them"
        )


def start_from(job: JobState, warm: WarmStart) -> JobState:
    """The new job starts from ``warm``: recorded as its parent in its events, report, card and trackers."""
    job = job.model_copy(update={"warm_start": warm})
    loss = f", its last training loss {warm.final_train_loss:.4f}" if warm.final_train_loss is not None else ""
    job.record(
        "warm_start",
        "completed",
        f"starts from run {warm.run_id}'s trained {'adapter' if warm.kind == 'adapter' else 'weights'}{loss}",
        parent_run=warm.run_id,
        path=warm.path,
    )
    return job
