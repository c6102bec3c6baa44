"""Planning steps: adopt a spec, prepare and quote it, run its free pre-flight checks."""

from __future__ import annotations

from functools import partial

from tools.core.errors import GuardRefusal
from tools.core.measured import MeasuredTime
from tools.core.money import usd
from tools.core.paths import resolve_dataset_path
from tools.core.spec import TrainingSpec
from tools.core.status import JobStatus
from tools.core.stop import stop_requested
from tools.inputs.prepared import prepare
from tools.job.quoting import build_quote, probe_time
from tools.job.state import JobState, require_spec
from tools.plan.checkpoints import can_resume
from tools.policy.store import spend_store
from tools.run.smoke import run_preflight


def set_spec(job: JobState, spec: TrainingSpec, *, source: str) -> JobState:
    """Adopt a spec after checking its data paths; any approval for an earlier spec stops matching.

    Refused once the job was cancelled or closed: a person's cancel is not undone by a new estimate.
    """
    spend_store().require_open(job.run_id)
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
    """Quote the spec (``tools.job.quoting``): priced by the backend that has its target, corrected by the ledger
    of actuals, with the same job on this CPU offered where no backend here can run the target.

    measured: a probe attempt's step time on the target (tools/job/probing.py); on this CPU a free probe measures it.
    """
    store = spend_store()
    store.require_open(job.run_id)
    spec = require_spec(job)
    job.record("estimate", "started", f"estimating {spec.method} of {spec.model_name} on {spec.target_gpu}")
    prepared = prepare(spec, job.folder.root / "data")
    should_stop = partial(stop_requested, job.thread)
    measured = measured or probe_time(prepared, job.folder.root / "probe", record=job.record, should_stop=should_stop)
    quote, resume = build_quote(
        prepared,
        policy=job.policy,
        spent_usd=store.money(job.thread).committed_usd,
        max_retries=job.max_retries,
        backend_choice=job.backend_choice,
        measured=measured,
        resume=job.resume,
    )
    job = job.model_copy(update={"quote": quote, "prepared": prepared, "resume": resume, "pending_request_id": None})
    target = quote.estimate
    bd = target.cost_breakdown
    placement = target.placement
    job.record(
        "estimate",
        "completed",
        f"{usd(target.estimated_cost_usd)}, {target.estimated_duration_min:.1f} min, "
        f"{target.estimated_vram_gb:.1f} GB on {bd.gpu} ({'fits' if bd.fits else 'does not fit'}); "
        + (placement.where() if placement else ""),
        quote=quote.model_dump(mode="json"),
        quote_hash=quote.quote_hash,
        estimate=target.model_dump(mode="json"),
        checkpoint_every=quote.checkpoint_every,
        data_digest=prepared.data.digest,
        resume=resume.model_dump(mode="json") if resume else None,
    )
    return preflight_job(job)


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
