"""The probe attempt: a few measured steps on the target GPU, priced and gated like any attempt, that re-price
the run before a person approves it.

The probe is a run of its own spec (the same one, stopped after a few steps, no held-out passes): it goes
through the same estimate, gate, person and spend store as any attempt, so it is approved and billed on its
own, and its approval is consumed by it. What it measured (seconds per step, the fixed start) then prices the
full run, whose approval asks again, now showing a measured time.
"""

from __future__ import annotations

from tools.core.errors import AegisError
from tools.core.measured import MeasuredTime
from tools.core.money import usd
from tools.core.spec import TrainingSpec
from tools.core.status import AttemptStatus, JobStatus
from tools.job.planning import estimate_job, set_spec
from tools.job.state import JobState, require_estimate, require_spec
from tools.run.probe import step_timing

PROBE_ATTEMPT_STEPS = 6  # the first is warm-up; the median of the other intervals is the step
MIN_PROBE_STEPS, MAX_PROBE_STEPS = 2, 1000  # one warm-up step and one timed; a probe, not a run


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
    if not job.attempts or job.attempts[-1].status != AttemptStatus.SUCCEEDED:
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


def start_probe(job: JobState, steps: int) -> JobState:
    """Make a probe of ``steps`` steps the job's spec, priced, with the full spec kept to come back to.

    The job must hold an estimate of the full spec (the probe's price is shown as a share of it).
    """
    if not MIN_PROBE_STEPS <= steps <= MAX_PROBE_STEPS:
        raise AegisError(
            f"a probe attempt runs {MIN_PROBE_STEPS} to {MAX_PROBE_STEPS} steps (one warm-up step and one timed), "
            f"not {steps}"
        )
    full = require_spec(job)
    full_cost = require_estimate(job).estimated_cost_usd
    job = estimate_job(set_spec(job, probe_spec(full, steps), source="probe attempt"))
    job = job.model_copy(update={"probe_of": full})
    job.record("probe", "started", probe_share(job, full_cost))
    return job


def finish_probe(job: JobState) -> JobState:
    """After the probe's attempt: the full spec back, priced with what the probe measured, to be asked for
    again; or FAILED, with nothing more started, when the probe measured nothing (it failed or stopped early)."""
    full = job.probe_of
    if full is None:
        raise AegisError("there is no probe attempt to finish")
    job = job.model_copy(update={"probe_of": None})
    measured = measured_by_probe(job)
    if measured is None:
        job.record("probe", "failed", "the probe attempt measured no steps; the run was not started")
        return job.model_copy(update={"status": JobStatus.FAILED})
    job.record("probe", "completed", f"{measured.step_seconds:.2f} s per step; {measured.source}")
    return estimate_job(set_spec(job, full, source="spec, priced by the probe attempt"), measured=measured)
