"""The probe attempt: a few measured steps on the target GPU, priced and gated like any attempt, that re-price
the run before a person approves it.

The probe is a run of its own spec (the same one, stopped after a few steps, no held-out passes): it goes
through the same estimate, gate, person and spend store as any attempt, so it is approved and billed on its
own, and its approval is consumed by it. What it measured (seconds per step, the fixed start) then prices the
full run, whose approval asks again, now showing a measured time.
"""

from __future__ import annotations

from tools.core.measured import MeasuredTime
from tools.core.money import usd
from tools.core.spec import TrainingSpec
from tools.job.state import JobState, require_estimate, require_spec
from tools.run.probe import step_timing

PROBE_ATTEMPT_STEPS = 6  # the first is warm-up; the median of the other intervals is the step


def probe_spec(spec: TrainingSpec, steps: int) -> TrainingSpec:
    """The spec stopped after ``steps`` steps, with no held-out split or eval set: only training is timed."""
    fields = {**spec.model_dump(), "max_steps": steps, "eval_split": 0.0, "eval_dataset_path": None}
    return TrainingSpec.model_validate(fields)


def probe_share(job: JobState, full_cost_usd: float) -> str:
    """The probe's price as a share of the full run's, for the event a person reads before approving it."""
    cost = require_estimate(job).estimated_cost_usd
    share = cost / full_cost_usd if full_cost_usd > 0 else 0.0
    spec = require_spec(job)
    return f"probe attempt of {spec.max_steps} steps: {usd(cost)}, {share:.0%} of the full run's {usd(full_cost_usd)}"


def measured_by_probe(job: JobState) -> MeasuredTime | None:
    """Seconds per step and the fixed start of the job's last attempt, read from its metrics; None if too short."""
    if not job.attempts or job.attempts[-1].status != "succeeded":
        return None
    result = job.attempts[-1]
    metrics = job.folder.attempt_dir(len(job.attempts)) / "metrics.jsonl"
    timing = step_timing(metrics, result.duration_s)
    if timing is None:
        return None
    return MeasuredTime(
        step_seconds=timing.step_seconds,
        startup_seconds=timing.startup_seconds,
        precision=timing.dtype or "auto",
        source=(
            f"measured: probe attempt of {timing.steps} steps on {result.num_gpus}x {result.gpu}, "
            f"billed {usd(result.actual_cost_usd)}"
        ),
    )
