"""A chat request that builds on an earlier run: continue a run that stopped, or start a new run from a finished
run's trained weights.

A run is named by its id (or a unique start of it), ``latest`` ("the last run") or ``stopped`` ("the run that
stopped"); in a thread that has trained, both words mean the thread's own run. How the run ended decides what
"continue run X" is: a run that stopped goes on as it was (``tools.use.continuing``: the same spec and data, a new
attempt priced for the steps left, auto-approval off for it), a finished one is built on with the changes asked
for (``tools.use.warm_start``: a new run from its weights). Either way the job goes on to estimate_cost and
request_approval like any other; nothing here prices, approves or bounds anything, and a refusal is one line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.intake import check_model
from tools.core.errors import AegisError, GuardRefusal
from tools.core.money import usd
from tools.core.paths import resolve_dataset_path
from tools.core.spec import TrainingSpec, parse_spec
from tools.core.status import JobStatus
from tools.job.planning import set_spec
from tools.job.state import JobState, require_estimate
from tools.use.continuing import CONTINUABLE, start_continue
from tools.use.runs import LATEST, RunRecord, find_run, list_runs
from tools.use.warm_start import start_from, warm_start_from

STOPPED = "stopped"
CONTINUE_KEY = "aegis_continue_run"  # on a message the server itself made (a Continue button): continue that run
FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.EVALS_FAILED})
JobFor = Callable[[dict[str, Any]], JobState]  # the thread's job for a draft (graph: tools.job.state.job_for_request)


def can_continue(job: JobState | None) -> bool:
    """Whether a job stopped with training to continue (what `start_continue` takes; it checks the rest)."""
    return job is not None and job.status in CONTINUABLE and bool(job.attempts)


def waiting_continue(job: JobState | None, ref: str) -> bool:
    """Whether ``ref`` names the thread's own continue, made and priced but not yet put to the gate (the person
    asked only for its price): that one goes on, instead of a second continue of the run."""
    if job is None or not job.attempts or job.status != JobStatus.PLANNING:
        return False
    word = ref.strip().lower()
    return word == STOPPED or word in LATEST or (bool(word) and job.run_id.startswith(ref.strip()))


def spec_changes(fields: dict[str, Any]) -> dict[str, Any]:
    """The spec fields a request sets: what a new run takes over its parent's spec."""
    return {k: v for k, v in fields.items() if k in TrainingSpec.model_fields and v is not None}


def newest_stopped() -> RunRecord:
    """The newest run on this machine that stopped with training to continue."""
    for run in list_runs():
        if run.outcome in CONTINUABLE and run.attempts:
            return find_run(run.run_id)
    raise AegisError("no run here stopped with training left to continue; `/runs` lists the runs and how each ended")


def named_run(ref: str, thread_job: JobState | None, *, trained: bool) -> RunRecord:
    """The run a request names. In a thread that has trained, "the last run" is the thread's own run, and "the run
    that stopped" is too when it did; else the newest run here that fits (stopped, or with a model for ``trained``).
    """
    word = ref.strip().lower()
    own = thread_job if thread_job is not None and thread_job.attempts else None
    if word == STOPPED:
        return find_run(thread_job.run_id) if thread_job is not None and can_continue(thread_job) else newest_stopped()
    if word in LATEST:
        if own is not None:
            return find_run(own.run_id)
        return find_run(LATEST[0], trained=True) if trained else newest_stopped()
    return find_run(ref)


def _differs(record: RunRecord, changes: dict[str, Any]) -> dict[str, Any]:
    """The changes that are changes for this run's spec (its own data path, said again, is none)."""
    spec = record.require_spec()
    out = {}
    for name, value in changes.items():
        if name in ("dataset_path", "eval_dataset_path") and getattr(spec, name):
            try:
                if Path(resolve_dataset_path(value)) == Path(resolve_dataset_path(getattr(spec, name))):
                    continue
            except AegisError:
                pass
        elif getattr(spec, name) == value:
            continue
        out[name] = value
    return out


def _finished_line(run: str, status: str) -> str:
    return (
        f"run {run} finished ({status}): only a run that stopped is continued. To train more on it, say "
        f'"train 2 more epochs on run {run}" or "continue run {run} on <new data>": a new run that starts from '
        "its weights."
    )


def continue_or_build(
    ref: str,
    fields: dict[str, Any],
    thread_job: JobState | None,
    *,
    max_budget_usd: float | None,
    person: str | None,
) -> tuple[JobState | None, RunRecord, dict[str, Any]]:
    """Continue run X: (the continued job, X, {}) when X stopped; (None, X, changes) when X finished and the
    request changes something, for a new run from its weights; refused in one line otherwise."""
    record = named_run(ref, thread_job, trained=False)
    job, run = record.job, record.run_id
    changes = _differs(record, spec_changes(fields))
    if job is not None and job.status in FINISHED:
        if changes:
            return None, record, changes
        raise GuardRefusal(_finished_line(run, job.status))
    if changes and job is not None and job.status in CONTINUABLE:
        said = ", ".join(f"{k} {v}" for k, v in changes.items())
        raise GuardRefusal(
            f"run {run} stopped before it finished: a continue trains it as it was, on the same data and spec, so it "
            f"cannot take {said}. Continue it as it was, or build on it with those changes once it has finished"
        )
    return start_continue(record, max_budget_usd=max_budget_usd, person=person), record, {}


def continued_text(job: JobState) -> str:
    """What the person reads before the continue's estimate and approval."""
    est = require_estimate(job)
    total = est.cost_breakdown.total_steps
    point = job.resume
    if point is None:
        where = f"from step 0 (no verified checkpoint was left): all {total} steps, {usd(est.estimated_cost_usd)}"
    else:
        saved = f" ({usd(point.saved_usd)} less than starting again)" if point.saved_usd > 0 else ""
        where = (
            f"from its checkpoint at step {point.step} of {total}: the {total - point.step} steps left, "
            f"{usd(est.estimated_cost_usd)}{saved}"
        )
    return (
        f"Continuing run {job.run_id} ({len(job.attempts)} attempt(s) so far, it ended {_ended(job)}) {where}. "
        "A new attempt of the same run, on the same spec and data; auto-approval is off for a continue, so a "
        "person approves it at the gate (a cancel there ends the run for good)."
    )


def _ended(job: JobState) -> str:
    last = job.attempts[-1]
    why = f": {last.failure_class}" if last.failure_class and last.failure_class != last.status else ""
    return f"{last.status}{why}"


def build_on(record_ref: str, draft: dict[str, Any], job_for: JobFor) -> tuple[JobState, str]:
    """A new job whose spec is the finished run's with the draft's changes, started from its trained weights.

    Asking for epochs drops the parent's max_steps (unless steps are asked too): "2 more epochs" are 2 epochs.
    Everything is checked (the spec, the weights fitting it) before the job is made.
    """
    record = find_run(record_ref, trained=True)
    parent = record.require_spec()
    changes = spec_changes(draft)
    values = {**parent.model_dump(), **changes}
    if "num_epochs" in changes and "max_steps" not in changes:
        values["max_steps"] = None
    spec = parse_spec(values)  # a SpecError names every problem in one line
    check_model(spec)
    warm = warm_start_from(record.run_id, spec)
    job = start_from(set_spec(job_for(draft), spec, source="request"), warm)  # its warm_start event names the parent
    changed = {k: (getattr(parent, k), getattr(spec, k)) for k in TrainingSpec.model_fields}
    shown = ", ".join(f"{k} {a} → {b}" for k, (a, b) in changed.items() if a != b) or "none"
    what = "LoRA adapter" if warm.kind == "adapter" else "full weights"
    loss = f", its last training loss {warm.final_train_loss:.4f}" if warm.final_train_loss is not None else ""
    text = (
        f"A new run {job.run_id} that starts from run {record.run_id}'s trained {what}{loss}: run "
        f"{record.run_id}'s spec with your changes ({shown}).\n```json\n"
        f"{json.dumps(spec.model_dump(mode='json'), indent=2)}\n```"
    )
    return job, text


def without_parent(job: JobState) -> JobState:
    """A request of its own on the thread's job: a warm start an earlier turn set on that job is withdrawn."""
    if job.warm_start is None:
        return job
    parent = job.warm_start.run_id
    job = job.model_copy(update={"warm_start": None})
    job.record("warm_start", "completed", f"withdrawn: this request does not start from run {parent}")
    return job
