"""The cost optimizer: a deterministic search over the catalog and the spec's cheap levers.

Levers, in the order a person would accept them: the GPU; with several GPUs, FSDP sharding, only where a full
replica per GPU does not fit; gradient checkpointing, only where activations are what does not fit; qlora instead of lora/full, only where it unlocks a cheaper
GPU and the run costs less there; a shorter seq_len, only where every row of the data still fits.
Quality levers the person set (epochs, learning rate, batch) are never touched.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from pydantic import BaseModel, ConfigDict

from tools.core.catalog import get_gpu, gpu_names
from tools.core.errors import AegisError
from tools.core.money import usd
from tools.core.spec import BudgetPolicy, CostEstimate, TrainingSpec, parse_spec
from tools.inputs.dataset import DatasetStats
from tools.plan.estimator import estimate

Scored = tuple[TrainingSpec, CostEstimate]  # a variant of the spec and its estimate


class Candidate(BaseModel):
    """One row of the optimizer's table: a variant the search priced, whether it fits, whether it was chosen."""

    model_config = ConfigDict(extra="forbid")

    gpu: str
    method: str
    gradient_checkpointing: bool
    seq_len: int
    sharding: str = "none"
    cost_usd: float
    vram_gb: float
    gpu_memory_gb: float
    minutes: float
    fits: bool
    chosen: bool  # the one the proposal picked, marked in the table


class OptimizationProposal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: TrainingSpec
    estimate: CostEstimate
    changes: dict[str, list[Any]]
    summary: str
    candidates: list[Candidate]


def shorter_seq_len(seq_len: int, longest_row: int) -> int | None:
    """The smallest power of two (≥ 64) that holds the longest row, if it is below the current seq_len."""
    size = 64
    while size < longest_row:
        size *= 2
    return size if size < seq_len else None


def optimize_spec(
    spec: TrainingSpec,
    policy: BudgetPolicy,
    *,
    spent_usd: float = 0.0,
    dataset_stats: DatasetStats,
    model_config: Any,
    gpus: Collection[str] | None = None,
) -> OptimizationProposal:
    """Propose the cheapest spec that fits; raise AegisError naming the near misses when nothing does.

    gpus: the GPUs something here can run (the caller's backends); default every catalog GPU.
    """
    scored = _search(spec, dataset_stats, model_config, gpus)
    choice = _choose(spec, scored)
    if choice is None:
        raise AegisError(
            f"no catalog GPU fits this job with the allowed levers (near misses: {_near_misses(scored)}); "
            "try a smaller model, a shorter seq_len or more GPUs"
        )
    new_spec, new_est = choice
    changes = {k: [v, getattr(new_spec, k)] for k, v in spec.model_dump().items() if getattr(new_spec, k) != v}
    candidates = [_candidate(s, e, chosen=s is new_spec) for s, e in scored]
    return OptimizationProposal(
        spec=new_spec,
        estimate=new_est,
        changes=changes,
        summary=_summary(new_spec, new_est, changes, policy, spent_usd),
        candidates=sorted(candidates, key=lambda c: (not c.fits, c.cost_usd)),
    )


def _search(spec: TrainingSpec, stats: DatasetStats, config: Any, runnable: Collection[str] | None) -> list[Scored]:
    """Every variant of the spec over the GPUs and levers, each with its estimate.

    A sharded (FSDP) and a checkpointed variant are tried only where the plain one does not fit, and only if the
    person did not set them; qlora is never sharded.
    """
    # Cloud GPUs are interchangeable for a price; a local card (no Modal name) is only the one the person has.
    cloud = [g for g in gpu_names() if g != "cpu" and get_gpu(g).modal_name is not None]
    gpus = ["cpu"] if spec.target_gpu == "cpu" else cloud if get_gpu(spec.target_gpu).modal_name else [spec.target_gpu]
    gpus = [g for g in gpus if runnable is None or g in runnable]
    methods = [spec.method] + (["qlora"] if spec.method != "qlora" and spec.target_gpu != "cpu" else [])
    seqs = [spec.seq_len]
    if (shorter := shorter_seq_len(spec.seq_len, stats.max_tokens_per_row)) is not None:
        seqs.append(shorter)
    scored: list[Scored] = []
    for gpu in gpus:
        for method in methods:
            for seq_len in seqs:
                plain = _variant(spec, gpu=gpu, method=method, seq_len=seq_len, gc=spec.gradient_checkpointing)
                est = estimate(plain, dataset_stats=stats, model_config=config)
                scored.append((plain, est))
                if not est.fits and spec.num_gpus > 1 and plain.sharding == "none" and method != "qlora":
                    sharded = parse_spec({**plain.model_dump(), "sharding": "fsdp"})
                    scored.append((sharded, estimate(sharded, dataset_stats=stats, model_config=config)))
                if not est.fits and not spec.gradient_checkpointing:
                    checkpointed = _variant(spec, gpu=gpu, method=method, seq_len=seq_len, gc=True)
                    scored.append((checkpointed, estimate(checkpointed, dataset_stats=stats, model_config=config)))
    return scored


def _choose(spec: TrainingSpec, scored: list[Scored]) -> Scored | None:
    """The cheapest fitting variant with the person's method, unless qlora runs cheaper on a cheaper GPU."""
    fitting = sorted(
        (pair for pair in scored if pair[1].fits),
        key=lambda p: (_cost(p), _quality_loss(spec, p[0])),
    )
    same_method = [p for p in fitting if p[0].method == spec.method]
    choice = same_method[0] if same_method else None
    unlocked = [
        p
        for p in fitting
        if p[0].method == "qlora"
        and spec.method != "qlora"
        and (choice is None or (_price(p[0]) < _price(choice[0]) and _cost(p) < _cost(choice)))
    ]
    return unlocked[0] if unlocked else choice


def _near_misses(scored: list[Scored]) -> str:
    """The three variants that came closest to fitting, with what they need and what their GPU has."""
    near = sorted(scored, key=lambda p: p[1].estimated_vram_gb - p[1].cost_breakdown.gpu_memory_gb)[:3]
    return "; ".join(
        f"{s.target_gpu} {s.method}{' +checkpointing' if s.gradient_checkpointing else ''} needs "
        f"{e.estimated_vram_gb:.1f} of {e.cost_breakdown.gpu_memory_gb:g} GB"
        for s, e in near
    )


def _summary(
    spec: TrainingSpec, est: CostEstimate, changes: dict[str, list[Any]], policy: BudgetPolicy, spent_usd: float
) -> str:
    budget_note = ""
    if spent_usd + est.estimated_cost_usd > policy.max_budget_usd:
        budget_note = f" It is still above the hard limit {usd(policy.max_budget_usd)}; the gate will refuse it."
    changed = ", ".join(f"{k}: {a} → {b}" for k, [a, b] in changes.items()) or "no change: already the cheapest"
    return (
        f"cheapest fitting spec: {usd(est.estimated_cost_usd)} on {spec.target_gpu} "
        f"({est.estimated_vram_gb:.1f} GB); changes: {changed}.{budget_note}"
    )


def _variant(spec: TrainingSpec, *, gpu: str, method: str, seq_len: int, gc: bool) -> TrainingSpec:
    fields = {"target_gpu": gpu, "method": method, "seq_len": seq_len, "gradient_checkpointing": gc}
    if method == "qlora":
        fields["sharding"] = "none"  # 4-bit weights are not sharded
    return parse_spec({**spec.model_dump(), **fields})


def _quality_loss(original: TrainingSpec, candidate: TrainingSpec) -> int:
    """Tie-break toward fewer changes to what the person asked for."""
    return sum(
        [
            candidate.method != original.method,
            candidate.seq_len != original.seq_len,
            candidate.gradient_checkpointing != original.gradient_checkpointing,
        ]
    )


def _price(spec: TrainingSpec) -> float:
    """Per hour; a GPU without a price ranks last (the gate refuses it)."""
    price = get_gpu(spec.target_gpu).price_usd_per_hour
    return math.inf if price is None else price


def _cost(pair: Scored) -> float:
    return pair[1].estimated_cost_usd


def _candidate(spec: TrainingSpec, est: CostEstimate, *, chosen: bool) -> Candidate:
    return Candidate(
        gpu=spec.target_gpu,
        method=spec.method,
        gradient_checkpointing=spec.gradient_checkpointing,
        seq_len=spec.seq_len,
        sharding=spec.sharding,
        cost_usd=est.estimated_cost_usd,
        vram_gb=est.estimated_vram_gb,
        gpu_memory_gb=est.cost_breakdown.gpu_memory_gb,
        minutes=est.estimated_duration_min,
        fits=est.fits,
        chosen=chosen,
    )
