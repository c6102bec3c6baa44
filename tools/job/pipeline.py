"""The deterministic pipeline behind ``aegis train``: the agent's plan without the LLM.

estimate → gate → (person) → render → run → evals, healing failures by the rules while the
retry bound and the budget allow → report. The same job steps and guards as the agent's tools.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from functools import partial

from tools.core.errors import GuardRefusal
from tools.core.spec import TrainingSpec
from tools.core.status import AttemptStatus, Decision, JobStatus
from tools.core.stop import stop_requested
from tools.job.approval import decide, gate_job, open_request
from tools.job.attempt import run_job
from tools.job.healing import evaluate_job, remediate_job
from tools.job.planning import estimate_job, set_spec
from tools.job.probing import finish_probe, start_probe
from tools.job.reporting import report_job
from tools.job.state import JobState, ProgressFn
from tools.plan.remediation import REMEDIATE_ON

AskFn = Callable[[JobState], tuple[Decision, str]]


def run_pipeline(
    job: JobState,
    spec: TrainingSpec,
    *,
    ask: AskFn,
    on_progress: ProgressFn | None = None,
    probe_steps: int | None = None,
) -> JobState:
    """Drive one job to a report. ``ask`` answers the gate when a person is needed.

    probe_steps: first a probe attempt of that many steps, gated and billed on its own, re-prices the run.
    """
    job = set_spec(job, spec, source="spec file")
    job = estimate_job(job)
    if probe_steps:
        job = _probe_attempt(job, probe_steps, ask, on_progress)
        if job.status != JobStatus.PLANNING:
            return report_job(job)
    return train_approved(through_gate(gate_job(job), ask), ask=ask, on_progress=on_progress)


def train_approved(job: JobState, *, ask: AskFn, on_progress: ProgressFn | None = None) -> JobState:
    """From the gate's answer to the report: run while approved, evaluate a success, heal by the rules."""
    while job.status == JobStatus.APPROVED:
        try:
            job = run_job(job, on_progress=on_progress)
        except GuardRefusal as exc:
            job.record("train", "failed", f"refused: {exc}", refused=True)
            job = job.model_copy(update={"status": JobStatus.REFUSED})
            break
        last = job.attempts[-1]
        if last.status == AttemptStatus.SUCCEEDED:
            job = evaluate_job(job, on_progress=on_progress, should_stop=partial(stop_requested, job.thread))
            break
        if last.status == AttemptStatus.INTERRUPTED or last.failure_class not in REMEDIATE_ON:
            break
        try:
            job = remediate_job(job)
        except GuardRefusal as exc:
            job.record(
                "remediate",
                "failed",
                f"refused: {exc}",
                refused=True,
                retry_count=job.retry_count,
                max_retries=job.max_retries,
            )
            job = job.model_copy(update={"status": JobStatus.FAILED})
            break
        job = through_gate(gate_job(job), ask)
    return report_job(job)


def _probe_attempt(job: JobState, steps: int, ask: AskFn, on_progress: ProgressFn | None) -> JobState:
    """Approve, run and bill a short attempt, then estimate the full spec with what it measured.

    Returns the job back in planning with the full spec and a measured estimate, or stopped (cancelled, refused,
    failed) with the probe as its last attempt.
    """
    job = through_gate(gate_job(start_probe(job, steps)), ask)
    if job.status != JobStatus.APPROVED:
        return job
    try:
        job = run_job(job, on_progress=on_progress)
    except GuardRefusal as exc:
        job.record("train", "failed", f"refused: {exc}", refused=True)
        return job.model_copy(update={"status": JobStatus.REFUSED})
    return finish_probe(job)


def through_gate(job: JobState, ask: AskFn) -> JobState:
    """Loop while a person keeps asking to optimize; stop at approve, cancel or refusal."""
    for _ in range(5):
        if job.status == JobStatus.PLANNING:
            job = gate_job(job)
        if job.status != JobStatus.AWAITING_APPROVAL:
            return job
        job, _shown = open_request(job, secrets.token_hex(8))
        decision, who = ask(job)
        job = decide(job, decision, who, answer_id=uuid.uuid4().hex)
    return job
