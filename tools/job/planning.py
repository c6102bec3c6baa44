"""Planning steps: adopt a spec, prepare and estimate it, run its free pre-flight checks."""

from __future__ import annotations

from typing import Any

from tools.core.catalog import get_gpu
from tools.core.errors import AegisError, GuardRefusal
from tools.core.isolation import Placement
from tools.core.measured import MeasuredTime
from tools.core.paths import resolve_dataset_path
from tools.core.spec import CostEstimate, TrainingSpec
from tools.core.status import JobStatus
from tools.core.stop import stop_requested
from tools.inputs.model_config import load_model_config, model_stats, remote_code_files
from tools.inputs.prepared import PreparedSpec, prepare
from tools.job.state import JobState, require_spec
from tools.plan.actuals import apply_learning, learned_error, read_actuals
from tools.plan.checkpoints import can_resume, checkpoint_interval, max_loss_share, price_resumed
from tools.plan.estimator import estimate, startup_seconds
from tools.policy.store import SpendStore
from tools.run.backend import Backend, NoBackend, choose_backend, get_backend
from tools.run.probe import probe_cpu
from tools.run.smoke import run_preflight


def set_spec(job: JobState, spec: TrainingSpec, *, source: str) -> JobState:
    """Adopt a spec after checking its data paths; any approval for an earlier spec stops matching.

    Refused once the job was cancelled or closed: a person's cancel is not undone by a new estimate.
    """
    SpendStore().require_open(job.run_id)
    resolve_dataset_path(spec.dataset_path)
    if spec.eval_dataset_path:
        resolve_dataset_path(spec.eval_dataset_path)
    resume = job.resume if job.resume and job.spec and can_resume(job.spec, spec) else None
    job = job.model_copy(
        update={
            "spec": spec,
            "status": JobStatus.PLANNING,
            "rendered": None,
            "resume": resume,
            "pending_request_id": None,
        }
    )
    job.folder.write_json("spec.json", spec.model_dump(mode="json"))
    job.record(
        "spec",
        "completed",
        f"spec set by {source}",
        source=source,
        spec_hash=spec.spec_hash(),
        spec=spec.model_dump(mode="json"),
    )
    return job


def estimate_job(job: JobState, *, measured: MeasuredTime | None = None) -> JobState:
    """Estimate the spec on its target, priced by the backend that has it, corrected by the ledger of actuals.

    When no backend here can run the target, the estimate says why (its placement's hint) and the same job is
    estimated on this CPU as an offer: a new spec with its own estimate and approval if the person takes it.

    measured: a probe attempt's step time on the target (tools/job/probing.py); on this CPU a free probe measures it.
    """
    SpendStore().require_open(job.run_id)
    spec = require_spec(job)
    job.record("estimate", "started", f"estimating {spec.method} of {spec.model_name} on {spec.target_gpu}")
    prepared = prepare(spec, job.folder.root / "data")
    inputs = {
        "dataset_stats": prepared.data.stats,
        "model_config": load_model_config(spec.model_name, trust_remote_code=spec.trust_remote_code),
    }
    history = read_actuals()
    measured = measured or _probe(job, spec, prepared)
    backend, placement = _place(job, spec)
    price = backend.price_usd_per_sec(spec) if backend is not None else None
    # A measured time is this machine's own: the ledger's correction of the model does not apply to it.
    target = estimate(spec, **inputs, measured=measured, price_usd_per_sec=price)
    if measured is None:
        target = apply_learning(target, learned_error(history, spec.target_gpu))
    resume = job.resume
    if resume is not None:
        stats = model_stats(inputs["model_config"])
        startup = measured.startup_seconds if measured else startup_seconds(stats, spec.target_gpu)
        target, saved_s, saved_usd = price_resumed(target, resume.step, startup)  # the estimate's own startup
        resume = resume.model_copy(update={"saved_usd": saved_usd, "saved_seconds": saved_s})
    target = target.model_copy(update={"placement": placement})
    offer = _cpu_offer(spec, inputs, history, placement) if backend is None and spec.target_gpu != "cpu" else None
    every = checkpoint_interval(target.cost_breakdown.total_steps, max_loss_share())
    job = job.model_copy(
        update={
            "estimate": target,
            "estimate_spec_hash": spec.spec_hash(),
            "cpu_offer": offer,
            "prepared": prepared,
            "checkpoint_every": every,
            "resume": resume,
            "pending_request_id": None,
        }
    )
    bd = target.cost_breakdown
    job.record(
        "estimate",
        "completed",
        f"${target.estimated_cost_usd:.4f}, {target.estimated_duration_min:.1f} min, "
        f"{target.estimated_vram_gb:.1f} GB on {bd.gpu} ({'fits' if bd.fits else 'does not fit'}); "
        + placement.where(),
        estimate=target.model_dump(mode="json"),
        checkpoint_every=every,
        data_digest=prepared.data.digest,
        resume=resume.model_dump(mode="json") if resume else None,
    )
    return preflight_job(job)


def _cpu_offer(spec: TrainingSpec, inputs: dict[str, Any], history: list, placement: Placement) -> CostEstimate:
    """The same job on this CPU, where it can run: offered, never run under the target's approval."""
    local = get_backend("local")
    offer = apply_learning(estimate(spec, "cpu", **inputs), learned_error(history, "cpu"))
    here = placement.model_copy(update={"backend": local.name, "isolation": local.isolation(), "hint": None})
    return offer.model_copy(update={"placement": here})


def _place(job: JobState, spec: TrainingSpec) -> tuple[Backend | None, Placement]:
    """The backend the spec's target (or the person's choice) runs on, what contains it there and the model's
    own code it runs; or no backend, and why none here can."""
    code = remote_code_files(spec.model_name) if spec.trust_remote_code else []
    try:
        backend = choose_backend(spec, job.backend_choice)
    except NoBackend as exc:
        return None, Placement(hint=str(exc), trust_remote_code=spec.trust_remote_code, remote_code=code)
    placement = Placement(
        backend=backend.name,
        isolation=backend.isolation(),
        trust_remote_code=spec.trust_remote_code,
        remote_code=code,
    )
    return backend, placement


def _probe(job: JobState, spec: TrainingSpec, prepared: PreparedSpec) -> MeasuredTime | None:
    """For a run on this CPU: a few real steps of the script on the real model, so the time shown is measured.

    Free and cached; when the model cannot run here the time stays modelled and pre-flight says why. A machine
    priced with AEGIS_LOCAL_PRICE_USD_PER_HOUR is not free: nothing trains on it before an approval, so its time
    stays modelled unless a person approves a probe attempt (``aegis train --probe-steps``).
    """
    if spec.target_gpu != "cpu" or spec.method == "qlora" or get_gpu("cpu").price_usd_per_sec > 0:
        return None
    job.record("probe", "started", "timing a few real training steps on this CPU")
    try:
        # A stop (Ctrl-C, SIGTERM, a Stop button) ends the probe at once; run_job then starts nothing.
        measured = probe_cpu(
            spec, prepared.data, job.folder.root / "probe", should_stop=lambda: stop_requested(job.thread)
        )
    except AegisError as exc:
        job.record("probe", "failed", f"time stays modelled: {exc}")
        return None
    job.record(
        "probe",
        "completed",
        f"{measured.step_seconds:.2f} s per step in {measured.precision}, {measured.startup_seconds:.0f} s startup "
        + (
            f"(the probe took {measured.took_seconds:.0f} s)" if measured.took_seconds else "(measured earlier, cached)"
        ),
        measured=measured.model_dump(mode="json"),
    )
    return measured


def preflight_job(job: JobState) -> JobState:
    """The free local checks for the current spec, run with every estimate so no one is asked to pay for a dud."""
    spec = require_spec(job)
    job.record("preflight", "started", "checking the data, the script and (for a GPU) a 2-step CPU smoke run")
    device = "cpu" if spec.target_gpu == "cpu" else "cuda"
    if job.prepared is None or job.prepared.spec_hash != spec.spec_hash():
        raise GuardRefusal("the data of the current spec has not been read; estimate it first")
    report = run_preflight(
        job.prepared,
        job.folder.root / "preflight" / spec.spec_hash()[:12],
        device=device,
        should_stop=lambda: stop_requested(job.thread),
    )
    job = job.model_copy(update={"preflight": report})
    job.record(
        "preflight",
        "completed" if report.passed else "failed",
        report.summary(),
        preflight=report.model_dump(mode="json"),
    )
    return job


def preflight_refusal(job: JobState) -> str | None:
    """Why pre-flight stops the current spec, or None when it passed for exactly this spec."""
    spec = require_spec(job)
    if job.preflight is None or job.preflight.spec_hash != spec.spec_hash():
        return "pre-flight has not run for the current spec; estimate it first"
    return None if job.preflight.passed else job.preflight.summary()
