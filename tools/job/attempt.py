"""One training attempt, the only step that spends money: check the data, start, render, train, capture.

The order is the guarantee. The data was read, hashed and copied into the run once, when the spec was
prepared; the approval binds that digest, and the script trains on that copy. Before the start the
sources are checked unchanged since (without reading them); the spend store then decides, in one
transaction, whether this attempt may start on this grant with these bytes, and numbers it; only then
is the script rendered into the attempt's own folder and run,
under a watchdog that stops it if this process dies. What the attempt billed is captured in the store
before the watchdog is released, so a crash at any point leaves the money held, never lost, and the
watchdog (``python -m tools.job.attempt WORKDIR``) books an orphaned attempt as interrupted.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tools.core.errors import AegisError, GuardRefusal
from tools.core.liveness import this_host
from tools.core.money import usd
from tools.core.paths import resolve_dataset_path
from tools.core.spec import ExecutionResult
from tools.core.status import AttemptStatus, EventStatus, JobStatus
from tools.core.stop import StopCheck, stop_requested
from tools.inputs.datafile import data_digest
from tools.inputs.local_models import resolve_model
from tools.inputs.model_identity import model_fingerprint
from tools.job.reporting import report_job
from tools.job.state import (
    JobState,
    ProgressFn,
    RenderedRef,
    attempt_price,
    job_backend,
    require_estimate,
    require_spec,
)
from tools.policy.records import Binding, HoldState, Ticket
from tools.policy.store import spend_store
from tools.report.live_tracking import follow_live, live_start
from tools.run.actuals_log import record_actual
from tools.run.backend import Attempt
from tools.run.local import MetricsTail, result_from_records
from tools.run.render import RenderedScript, render_script
from tools.run.watchdog import Watchdog

JOB_FILE = "job.json"
TICKET_FILE = "ticket.json"
SUPERVISION_FILE = "supervision.json"  # which processes keep the attempt: a reconcile asks if any still runs
BRAKE_POLL_S = 2.0  # how often a running attempt asks the store whether the operator stopped all spending


def _run_options(job: JobState, device: str) -> dict:
    """Checkpoints, resume, a warm start's adapter, and on this CPU the precision the probe measured fastest (part
    of the approved estimate)."""
    measured = job.estimate.cost_breakdown.measured_precision if job.estimate and device == "cpu" else None
    warm = job.warm_start
    return {
        "checkpoint_every": job.checkpoint_every,
        "resume_from": job.resume.path if job.resume else None,
        "precision": measured,
        "init_adapter": warm.path if warm is not None and warm.kind == "adapter" and job.resume is None else None,
    }


def model_path(job: JobState) -> str:
    """The weights training starts from: the base model, or a warm start's full weights."""
    warm = job.warm_start
    if warm is not None and warm.kind == "model":
        return warm.path
    return resolve_model(require_spec(job).model_name).path


def _device(job: JobState) -> str:
    """What the script is rendered for: the device of the backend that runs it (a preview needs no backend)."""
    est = job.estimate
    if est is not None and est.placement is not None and est.placement.backend is not None:
        return job_backend(job).device
    return "cpu" if require_spec(job).target_gpu == "cpu" else "cuda"


def render_preview(job: JobState) -> JobState:
    """The script and config the next attempt would run, in ``preview/``: free, and starts nothing."""
    spec = require_spec(job)
    eval_path = resolve_dataset_path(spec.eval_dataset_path) if spec.eval_dataset_path else None
    rendered = render_script(
        spec,
        job.folder.root / "preview",
        model_path=model_path(job),
        dataset_path=resolve_dataset_path(spec.dataset_path),
        eval_dataset_path=eval_path,
        device=_device(job),
        extra=_run_options(job, _device(job)),
    )
    ref = _ref(len(job.attempts) + 1, rendered, job)
    job = job.model_copy(update={"rendered": ref})
    job.record("render", "completed", f"rendered a preview: {rendered.script_path}", script=ref.script_path)
    return job


def run_job(job: JobState, *, on_progress: ProgressFn | None = None, should_stop: StopCheck | None = None) -> JobState:
    """Start one attempt if, and only if, the spend store says yes; book what it really cost."""
    spec, est = require_spec(job), require_estimate(job)
    stop = should_stop or (lambda: stop_requested(job.thread))
    if stop():
        raise GuardRefusal("a stop was requested; no training was started")
    prepared = job.prepared
    if prepared is None or prepared.spec_hash != spec.spec_hash():
        raise GuardRefusal("the data of the current spec has not been read; estimate it first")
    digest, changed = prepared.data.digest, prepared.data.change()
    if changed:  # read again only now, to say what the bytes are; the copy of the approved ones stays
        digest = data_digest(spec.dataset_path, spec.eval_dataset_path)
    backend = job_backend(job)
    seconds = est.cost_breakdown.estimated_seconds
    try:
        ticket = spend_store().start_attempt(
            job.run_id,
            grant_id=job.approval.grant_id if job.approval else None,
            binding=Binding(spec_hash=spec.spec_hash(), estimate_hash=est.estimate_hash(), data_digest=digest),
            estimated_seconds=seconds,
            price_usd_per_s=attempt_price(job),
            default_timeout_s=backend.default_timeout_s(seconds),
            owner_pid=os.getpid(),
            model=spec.model_name,
            gpu=spec.target_gpu,
        )
    except GuardRefusal as exc:
        raise GuardRefusal(f"{exc} ({changed})" if changed else str(exc)) from None
    workdir = job.folder.attempt_dir(ticket.attempt)
    if job.model_fingerprint is None:  # what a continue checks it trains again
        job = job.model_copy(update={"model_fingerprint": model_fingerprint(resolve_model(spec.model_name).path)})
    brake = BrakeWatch()
    return _attempt(job, ticket, workdir, on_progress, lambda: stop() or brake())


class Supervision(BaseModel):
    """The processes that keep a running attempt, on which machine."""

    model_config = ConfigDict(extra="forbid")

    host: str
    owner: int
    watchdog: int
    trainer_group: int


class BrakeWatch:
    """Whether the operator's brake stops running attempts (``aegis spend freeze --stop-running``), asked of the
    shared store at most every BRAKE_POLL_S, so an attempt on any server sharing it stops and is booked."""

    def __init__(self) -> None:
        self.next_poll = 0.0
        self.stopping = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.stopping and now >= self.next_poll:
            self.next_poll = now + BRAKE_POLL_S
            try:
                brake = spend_store().brake()
            except AegisError:
                return self.stopping  # the store is unreachable for a moment: the watchdog and time limit still hold
            self.stopping = brake.frozen and brake.stop_running
        return self.stopping


def _attempt(job: JobState, ticket: Ticket, workdir: Path, on_progress: ProgressFn | None, stop: StopCheck) -> JobState:
    spec = require_spec(job)
    data = job.prepared.data if job.prepared else None
    assert data is not None
    watchdog: Watchdog | None = None

    def guard(pid: int) -> None:
        nonlocal watchdog
        watchdog = Watchdog.start(pid, ["tools.job.attempt", str(workdir)], log_path=str(workdir / "watchdog.log"))
        who = Supervision(host=this_host(), owner=os.getpid(), watchdog=watchdog.proc.pid, trainer_group=pid)
        (workdir / SUPERVISION_FILE).write_text(who.model_dump_json(), encoding="utf-8")

    try:
        job.record(
            "train",
            "started",
            f"attempt {ticket.attempt} on {job_backend(job).name}: holds {usd(ticket.held_usd)} for at most "
            f"{ticket.timeout_s / 60:.0f} min",
            attempt=ticket.attempt,
            spec_hash=spec.spec_hash(),
            grant_id=ticket.grant_id,
            held_usd=ticket.held_usd,
            timeout_s=ticket.timeout_s,
            data_digest=data.digest,
        )
        rendered = render_script(
            spec,
            workdir,
            model_path=model_path(job),
            dataset_path=Path(data.train_copy),
            eval_dataset_path=Path(data.eval_copy) if data.eval_copy else None,
            device=_device(job),
            extra=_run_options(job, _device(job)),
        )
        job = job.model_copy(update={"status": JobStatus.RUNNING, "rendered": _ref(ticket.attempt, rendered, job)})
        job.folder.write_json(JOB_FILE, job.model_dump(mode="json"))
        (workdir / TICKET_FILE).write_text(ticket.model_dump_json(), encoding="utf-8")
        result = _execute(job, ticket, rendered, on_progress, stop, guard)
    except BaseException as exc:
        billed = (time.time() - ticket.started) * ticket.price_usd_per_s
        spend_store().capture(ticket.attempt_id, min(billed, ticket.held_usd), "error")
        if watchdog is not None:
            watchdog.release()
        if isinstance(exc, Exception) and not isinstance(exc, AegisError):
            job.record("train", "failed", f"attempt {ticket.attempt} could not run: {type(exc).__name__}: {exc}")
        raise
    job = book_attempt(job, ticket, result)
    if watchdog is not None:
        watchdog.release()
    return job


def _execute(
    job: JobState,
    ticket: Ticket,
    rendered: RenderedScript,
    on_progress: ProgressFn | None,
    stop: StopCheck,
    on_start: Callable[[int], None],
) -> ExecutionResult:
    spec, est = require_spec(job), require_estimate(job)
    attempt = Attempt(
        spec=spec,
        rendered=rendered,
        timeout_s=ticket.timeout_s,
        price_usd_per_s=ticket.price_usd_per_s,
        estimated_seconds=est.cost_breakdown.estimated_seconds,
        estimated_cost_usd=est.estimated_cost_usd,
        memory_limit_mb=job.local_memory_limit_mb,
        on_start=on_start,
    )
    data = job.prepared.data if job.prepared else None
    live = live_start(job.folder, spec, attempt=ticket.attempt, metrics_path=rendered.metrics_path, data=data)
    with follow_live(live):  # its steps reach MLflow and TensorBoard as it trains
        return job_backend(job).run(attempt, on_progress, stop)


def book_attempt(job: JobState, ticket: Ticket, result: ExecutionResult) -> JobState:
    """Capture the attempt's bill in the store (releasing the rest of its hold), then note it in the job's log."""
    spend_store().capture(ticket.attempt_id, result.actual_cost_usd, result.status)
    est = require_estimate(job)
    record_actual(job.run_id, ticket.attempt, est, result)
    ended = {AttemptStatus.SUCCEEDED: JobStatus.RUNNING, AttemptStatus.INTERRUPTED: JobStatus.INTERRUPTED}
    status = ended.get(AttemptStatus(result.status), JobStatus.FAILED)
    job = job.model_copy(update={"attempts": [*job.attempts, result], "status": status, "rendered": None})
    summary = result.model_dump(mode="json", exclude={"loss_curve"})
    if result.status == AttemptStatus.SUCCEEDED:
        job.record(
            "train",
            "completed",
            f"attempt {ticket.attempt} finished: loss {result.initial_train_loss:.3f} → {result.final_train_loss:.3f}, "
            f"{result.tokens_per_s:.0f} tokens/s, {result.duration_s:.0f} s, billed {usd(result.actual_cost_usd)}",
            result=summary,
            captured_usd=result.actual_cost_usd,
        )
    else:
        event_status = EventStatus.INTERRUPTED if result.status == AttemptStatus.INTERRUPTED else EventStatus.FAILED
        job.record(
            "train",
            event_status,
            f"attempt {ticket.attempt} {result.status}: {result.failure_class} — {result.error_message or 'no error text'}",
            result=summary,
            captured_usd=result.actual_cost_usd,
        )
    return job


def recover_orphan(workdir: Path) -> int:
    """After the process that ran an attempt died: book it as interrupted and write the report, once."""
    ticket = Ticket.model_validate_json((workdir / TICKET_FILE).read_text(encoding="utf-8"))
    store = spend_store()
    row = next((a for a in store.attempts(job_id=ticket.job_id) if a.attempt_id == ticket.attempt_id), None)
    if row is None or row.state is HoldState.CAPTURED:
        return 0  # booked by its own process before it died
    died = f"the process that ran it (pid {row.owner_pid}) died; its watchdog stopped the training"
    book_lost(workdir, ticket, ended=time.time(), why=died)
    return 0


def book_lost(workdir: Path, ticket: Ticket, *, ended: float, why: str) -> JobState:
    """Book an attempt whose owner is gone as interrupted, billed from its start to ``ended`` (at most its hold),
    with what its metrics show it trained; then the run's report. The store's capture changes nothing if the
    attempt was already captured (a reconcile captures first, so that only one process books it)."""
    job = JobState.model_validate_json((workdir.parent / JOB_FILE).read_text(encoding="utf-8"))
    rendered = RenderedScript.from_paths(workdir / "train.py", workdir / "config.json")
    tail = MetricsTail(rendered.metrics_path)
    tail.read_new()
    result = result_from_records(
        require_spec(job),
        rendered,
        tail.records,
        exit_code=None,
        log_path=workdir / "train.log",
        duration=max(0.0, ended - ticket.started),
        timed_out=False,
        interrupted=True,
        timeout_s=ticket.timeout_s,
        memory_limit_mb=job.local_memory_limit_mb,
        sampled_peak_mb=0.0,
        gpu_price_usd_per_sec=ticket.price_usd_per_s,
        estimated_gpu_cost_usd=require_estimate(job).estimated_cost_usd,
    )
    result = result.model_copy(
        update={"error_message": why, "actual_cost_usd": min(result.actual_cost_usd, ticket.held_usd)}
    )
    job = book_attempt(job, ticket, result)
    return report_job(job, outcome="interrupted")


def _ref(attempt: int, rendered: RenderedScript, job: JobState) -> RenderedRef:
    return RenderedRef(
        attempt=attempt,
        workdir=str(rendered.workdir),
        script_path=str(rendered.script_path),
        config_path=str(rendered.config_path),
        spec_hash=require_spec(job).spec_hash(),
    )


if __name__ == "__main__":
    sys.exit(recover_orphan(Path(sys.argv[1])))
