"""Building the quote: the one place a spec is priced (``tools.plan.quote.Quote``).

The job's estimate step, ``aegis estimate`` and every re-pricing (a remediation, a probe, the optimizer's
proposal) come here with a ``PreparedSpec``, so the data is read once, the model's facts come with it, and
every view shows the same numbers. The engines under ``tools/plan`` read nothing; this module hands them what
was prepared, places the spec on a backend, times it on this CPU when that is free, and corrects the model by
the ledger of actuals.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.core.catalog import get_gpu, gpu_names
from tools.core.errors import AegisError
from tools.core.isolation import Placement
from tools.core.measured import MeasuredTime
from tools.core.money import require_price
from tools.core.spec import BudgetPolicy, CostEstimate, TrainingSpec
from tools.core.status import EventStatus
from tools.inputs.model_config import model_stats, remote_code_files
from tools.inputs.prepared import PreparedSpec, prepare
from tools.plan.actuals import ActualRecord, apply_learning, learned_error
from tools.plan.checkpoints import ResumePoint, checkpoint_interval, max_loss_share, price_resumed
from tools.plan.estimator import estimate, startup_seconds
from tools.plan.optimizer import OptimizationProposal, optimize_spec
from tools.plan.quote import AttemptCap, Quote
from tools.plan.worst_case import plan_worst_case
from tools.policy.gate import attempt_limits
from tools.run.actuals_log import read_actuals
from tools.run.backend import AUTO, Backend, NoBackend, choose_backend, get_backend
from tools.run.probe import probe_cpu

Record = Callable[..., None]  # (phase, status, message, **data): a job's event log, or a line for the person
StopCheck = Callable[[], bool]
DEFAULT_MAX_RETRIES = 3


def place(spec: TrainingSpec, backend_choice: str = AUTO) -> tuple[Backend | None, Placement]:
    """The backend the spec's target (or the person's choice) runs on, what contains it there and the model's
    own code it runs; or no backend, and why none here can."""
    code = remote_code_files(spec.model_name) if spec.trust_remote_code else []
    try:
        backend = choose_backend(spec, backend_choice)
    except NoBackend as exc:
        return None, Placement(hint=str(exc), trust_remote_code=spec.trust_remote_code, remote_code=code)
    placement = Placement(
        backend=backend.name, isolation=backend.isolation(), trust_remote_code=spec.trust_remote_code, remote_code=code
    )
    return backend, placement


def runnable_gpus(spec: TrainingSpec, backend_choice: str = AUTO) -> list[str]:
    """The catalog GPUs some backend here can run this spec on now: the optimizer proposes nothing else."""
    found = []
    for name in gpu_names():
        try:
            choose_backend(spec.model_copy(update={"target_gpu": name}), backend_choice)
        except AegisError:  # NoBackend, or a chosen backend that does not have it
            continue
        found.append(name)
    return found


def probe_time(
    prepared: PreparedSpec, folder: Path, *, record: Record, should_stop: StopCheck | None = None
) -> MeasuredTime | None:
    """For a run on this CPU: a few real steps of the script on the real model, so the time shown is measured.

    Free and cached; when the model cannot run here the time stays modelled and pre-flight says why. A machine
    priced with AEGIS_LOCAL_PRICE_USD_PER_HOUR is not free: nothing trains on it before an approval, so its time
    stays modelled unless a person approves a probe attempt (``aegis train --probe-steps``).
    """
    spec = prepared.spec
    if spec.target_gpu != "cpu" or spec.method == "qlora" or get_gpu("cpu").price_usd_per_sec > 0:
        return None
    record("probe", EventStatus.STARTED, "timing a few real training steps on this CPU")
    try:
        measured = probe_cpu(spec, prepared.data, folder, should_stop=should_stop)
    except AegisError as exc:
        record("probe", EventStatus.FAILED, f"time stays modelled: {exc}")
        return None
    took = f"(the probe took {measured.took_seconds:.0f} s)" if measured.took_seconds else "(measured earlier, cached)"
    record(
        "probe",
        EventStatus.COMPLETED,
        f"{measured.step_seconds:.2f} s per step in {measured.precision}, {measured.startup_seconds:.0f} s startup "
        + took,
        measured=measured.model_dump(mode="json"),
    )
    return measured


def build_quote(
    prepared: PreparedSpec,
    *,
    policy: BudgetPolicy,
    spent_usd: float,
    max_retries: int,
    backend_choice: str = AUTO,
    measured: MeasuredTime | None = None,
    resume: ResumePoint | None = None,
) -> tuple[Quote, ResumePoint | None]:
    """Price a prepared spec, once, for everything that shows it; returns the quote and the resume point priced.

    measured: a probe's step time on the target; a measured time is this machine's own, so the ledger's
    correction of the model does not apply to it. resume: the checkpoint a retry continues from, priced for
    the steps left (with what continuing saves).
    """
    spec, stats, config = prepared.spec, prepared.data.stats, prepared.config()
    history = read_actuals()
    backend, placement = place(spec, backend_choice)
    price = require_price(backend.price_usd_per_sec(spec), f"{spec.target_gpu} on {backend.name}") if backend else None
    target = estimate(spec, dataset_stats=stats, model_config=config, measured=measured, price_usd_per_sec=price)
    if measured is None:
        target = apply_learning(target, learned_error(history, spec.target_gpu))
    if resume is not None:
        startup = measured.startup_seconds if measured else startup_seconds(model_stats(config), spec.target_gpu)
        target, saved_s, saved_usd = price_resumed(target, resume.step, startup)  # the estimate's own startup
        resume = resume.model_copy(update={"saved_usd": saved_usd, "saved_seconds": saved_s})
    target = target.model_copy(update={"placement": placement})
    cpu_offer = (
        _cpu_offer(prepared, config, placement, history) if backend is None and spec.target_gpu != "cpu" else None
    )
    worst, cap, offer = None, None, None
    if backend is not None and price is not None:  # both or neither: the price narrows the type
        worst = plan_worst_case(
            spec,
            target,
            policy,
            max_retries=max_retries,
            spent_usd=spent_usd,
            price_usd_per_s=price,
            dataset_stats=stats,
            model_config=config,
        )
        cap = _cap(backend, target, price, policy.max_budget_usd - spent_usd)
        if not target.fits or spent_usd + target.estimated_cost_usd > policy.max_budget_usd:
            offer = propose(prepared, policy, spent_usd, backend_choice, config)
    quote = Quote(
        spec_hash=prepared.spec_hash,
        data_digest=prepared.data.digest,
        estimate=target,
        cpu_offer=cpu_offer,
        checkpoint_every=checkpoint_interval(target.cost_breakdown.total_steps, max_loss_share()),
        worst_case=worst,
        cap=cap,
        offer=offer if isinstance(offer, OptimizationProposal) else None,
        no_offer=offer if isinstance(offer, str) else None,
        policy=policy,
        spent_usd=spent_usd,
    )
    return quote.sealed(), resume


def _cpu_offer(prepared: PreparedSpec, config: Any, placement: Placement, history: list[ActualRecord]) -> CostEstimate:
    """The same job on this CPU, where it can run: offered, never run under the target's approval."""
    local = get_backend("local")
    here = placement.model_copy(update={"backend": local.name, "isolation": local.isolation(), "hint": None})
    on_cpu = estimate(
        prepared.spec,
        "cpu",
        dataset_stats=prepared.data.stats,
        model_config=config,
        price_usd_per_sec=require_price(
            local.price_usd_per_sec(prepared.spec.model_copy(update={"target_gpu": "cpu"})), "this machine's CPU"
        ),
    )
    return apply_learning(on_cpu, learned_error(history, "cpu")).model_copy(update={"placement": here})


def propose(
    prepared: PreparedSpec, policy: BudgetPolicy, spent_usd: float, backend_choice: str = AUTO, config: Any = None
) -> OptimizationProposal | str:
    """The optimizer's cheapest fitting spec on a GPU something here runs, or why it found none.

    config: the model's config where the caller already rebuilt it from the prepared spec."""
    try:
        return optimize_spec(
            prepared.spec,
            policy,
            spent_usd=spent_usd,
            dataset_stats=prepared.data.stats,
            model_config=config if config is not None else prepared.config(),
            gpus=runnable_gpus(prepared.spec, backend_choice),
        )
    except AegisError as exc:
        return f"the optimizer found nothing that fits: {exc}"


def _cap(backend: Backend, target: CostEstimate, price: float, remaining_usd: float) -> AttemptCap:
    """One attempt's time limit on its backend, cut to what the money left pays, and what it can bill then."""
    seconds = target.cost_breakdown.estimated_seconds
    default = backend.default_timeout_s(seconds)
    try:
        limits = attempt_limits(
            estimated_seconds=seconds, price_usd_per_s=price, default_timeout_s=default, remaining_usd=remaining_usd
        )
    except ValueError as exc:  # the gate refuses such an attempt; the quote says why
        return AttemptCap(timeout_s=default, max_attempt_cost_usd=default * price, short_by=str(exc))
    return AttemptCap(
        timeout_s=limits.timeout_s, max_attempt_cost_usd=limits.hold_usd, budget_capped=limits.budget_capped
    )


def quote_spec(
    spec: TrainingSpec,
    folder: Path,
    *,
    policy: BudgetPolicy,
    backend_choice: str = AUTO,
    max_retries: int = DEFAULT_MAX_RETRIES,
    record: Record,
) -> tuple[PreparedSpec, Quote]:
    """A spec file's quote outside a job (``aegis estimate``): prepared under ``folder``, timed and priced the
    way a job would price it, with nothing spent yet."""
    prepared = prepare(spec, folder / "data")
    measured = probe_time(prepared, folder / "probe", record=record)
    quote, _ = build_quote(
        prepared,
        policy=policy,
        spent_usd=0.0,
        max_retries=max_retries,
        backend_choice=backend_choice,
        measured=measured,
    )
    return prepared, quote
