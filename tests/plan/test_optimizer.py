"""The cost optimizer's promises, each against the real estimator and the shipped model configs (no network)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pytest

from tools.core.catalog import get_gpu, gpu_names
from tools.core.errors import AegisError
from tools.core.money import usd
from tools.core.spec import BudgetPolicy, TrainingSpec
from tools.inputs.dataset import DatasetStats
from tools.inputs.model_config import load_model_config
from tools.plan.estimator import estimate
from tools.plan.optimizer import OptimizationProposal, optimize_spec, shorter_seq_len

QWEN = "Qwen/Qwen2.5-0.5B"
LLAMA = "meta-llama/Llama-2-7b-hf"
SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"
LEVERS = {"target_gpu", "method", "seq_len", "gradient_checkpointing"}
ROOMY = BudgetPolicy(max_budget_usd=10_000, soft_threshold_usd=1)


@cache
def config(model: str) -> Any:
    return load_model_config(model)


def stats(seq_len: int, *, rows: int = 2000, tokens_per_row: int = 400, longest: int | None = None) -> DatasetStats:
    """A dataset measured at seq_len; longest: the longest row before truncation (default: it fills seq_len)."""
    kept = min(tokens_per_row, seq_len)
    return DatasetStats(
        rows=rows,
        format="text",
        tokens=rows * kept,
        mean_tokens_per_row=kept,
        max_tokens_per_row=seq_len if longest is None else longest,
        truncated_rows=0,
        seq_len=seq_len,
        approximate=False,
        tokenizer="test",
    )


def make_spec(model: str = QWEN, **fields: Any) -> TrainingSpec:
    return TrainingSpec(**{"model_name": model, "dataset_path": "d.jsonl", "target_gpu": "h100", **fields})


def propose(
    spec: TrainingSpec, data: DatasetStats | None = None, policy: BudgetPolicy = ROOMY, spent_usd: float = 0.0
) -> OptimizationProposal:
    return optimize_spec(
        spec,
        policy,
        spent_usd=spent_usd,
        dataset_stats=data or stats(spec.seq_len),
        model_config=config(spec.model_name),
    )


# Cloud GPUs are what the optimizer may move a job to; a local card (no Modal name) is only the one a person has.
CLOUD = [g for g in gpu_names() if g != "cpu" and get_gpu(g).modal_name is not None]


def price(gpu: str) -> float:
    return get_gpu(gpu).price_usd_per_hour


# --- the cheapest GPU ----------------------------------------------------------------------------------


def test_proposes_the_cheapest_gpu_the_job_fits_on():
    spec = make_spec(QWEN)
    data = stats(spec.seq_len)
    priced = {gpu: estimate(spec, gpu, dataset_stats=data, model_config=config(QWEN)) for gpu in CLOUD}
    cheapest = min((gpu for gpu, est in priced.items() if est.fits), key=lambda g: priced[g].estimated_cost_usd)
    proposal = propose(spec, data)
    assert cheapest != "h100"
    assert proposal.changes == {"target_gpu": ["h100", cheapest]}
    assert proposal.estimate.estimated_cost_usd == pytest.approx(priced[cheapest].estimated_cost_usd)
    assert proposal.summary.startswith(f"cheapest fitting spec: {usd(proposal.estimate.estimated_cost_usd)} on")


GRID = [
    (model, method, rows, seq_len, batch)
    for model in (QWEN, LLAMA)
    for method in ("lora", "full_finetune")
    for rows in (100, 2000)
    for seq_len in (512, 2048)
    for batch in (1, 16)
]


@pytest.mark.parametrize(("model", "method", "rows", "seq_len", "batch"), GRID)
def test_never_dearer_than_the_persons_method_and_qlora_only_on_a_cheaper_gpu(model, method, rows, seq_len, batch):
    spec = make_spec(model, method=method, seq_len=seq_len, micro_batch_size=batch)
    proposal = propose(spec, stats(seq_len, rows=rows, tokens_per_row=seq_len))
    same = [c for c in proposal.candidates if c.fits and c.method == method]
    assert proposal.estimate.fits
    if same:
        assert proposal.estimate.estimated_cost_usd <= min(c.cost_usd for c in same)
    if proposal.spec.method != method:
        assert proposal.spec.method == "qlora"
        assert not same or price(proposal.spec.target_gpu) < price(min(same, key=lambda c: c.cost_usd).gpu)


# --- gradient checkpointing ----------------------------------------------------------------------------


def test_checkpointing_when_activations_are_what_does_not_fit():
    spec = make_spec(SMOL, target_gpu="cpu", micro_batch_size=16, seq_len=2048)
    data = stats(2048, rows=100, tokens_per_row=2048)
    plain = estimate(spec, dataset_stats=data, model_config=config(SMOL)).cost_breakdown
    assert not plain.fits
    assert plain.weights_gb + plain.gradients_gb + plain.optimizer_gb + plain.overhead_gb < plain.gpu_memory_gb
    proposal = propose(spec, data)
    assert proposal.changes == {"gradient_checkpointing": [False, True]}
    assert proposal.estimate.fits and proposal.spec.method == "lora"  # no qlora on a CPU


def test_checkpointing_is_tried_only_where_the_plain_run_does_not_fit():
    spec = make_spec(QWEN, micro_batch_size=12)
    proposal = propose(spec, stats(512, rows=100))
    assert proposal.changes == {"target_gpu": ["h100", "t4"], "gradient_checkpointing": [False, True]}
    rows = {(c.gpu, c.method, c.seq_len, c.gradient_checkpointing): c for c in proposal.candidates}
    checkpointed = [key for key in rows if key[3]]
    assert checkpointed
    for gpu, method, seq_len, _ in checkpointed:
        assert not rows[(gpu, method, seq_len, False)].fits
    assert any(c.fits and not c.gradient_checkpointing for c in proposal.candidates)  # never added where it fits


def test_a_person_who_set_checkpointing_keeps_it():
    proposal = propose(make_spec(QWEN, micro_batch_size=16, gradient_checkpointing=True), stats(512, rows=100))
    assert all(c.gradient_checkpointing for c in proposal.candidates)
    assert "gradient_checkpointing" not in proposal.changes


# --- qlora ---------------------------------------------------------------------------------------------


def test_qlora_when_it_unlocks_a_cheaper_gpu():
    spec = make_spec(LLAMA, method="full_finetune", micro_batch_size=1)
    proposal = propose(spec, stats(512, rows=100))
    full = [c for c in proposal.candidates if c.fits and c.method == "full_finetune"]
    assert full and all(c.gpu_memory_gb > 80 for c in full)  # a 7B full fine-tune needs a 141+ GB GPU
    assert proposal.spec.method == "qlora" and proposal.changes["method"] == ["full_finetune", "qlora"]
    best_full = min(full, key=lambda c: c.cost_usd)
    assert price(proposal.spec.target_gpu) < price(best_full.gpu)
    assert proposal.estimate.estimated_cost_usd < best_full.cost_usd


def test_qlora_not_taken_on_the_same_gpu_even_when_cheaper():
    spec = make_spec(QWEN, method="full_finetune", micro_batch_size=1)
    proposal = propose(spec, stats(512, rows=2000))
    assert proposal.spec.method == "full_finetune" and proposal.spec.target_gpu == "t4"
    same_gpu_qlora = next(c for c in proposal.candidates if c.gpu == "t4" and c.method == "qlora")
    assert same_gpu_qlora.fits and same_gpu_qlora.cost_usd < proposal.estimate.estimated_cost_usd


def test_qlora_not_taken_when_its_cheaper_gpu_makes_a_dearer_run():
    """lora fits on an h100 at batch 16; qlora fits on cheaper GPUs but runs longer there and costs more."""
    spec = make_spec(LLAMA, seq_len=4096, micro_batch_size=16)
    proposal = propose(spec, stats(4096, rows=100, tokens_per_row=4096))
    cheaper_gpu_qlora = [
        c
        for c in proposal.candidates
        if c.fits and c.method == "qlora" and price(c.gpu) < price(proposal.spec.target_gpu)
    ]
    assert cheaper_gpu_qlora
    assert all(c.cost_usd > proposal.estimate.estimated_cost_usd for c in cheaper_gpu_qlora)
    assert proposal.spec.method == "lora" and "method" not in proposal.changes


def test_a_qlora_spec_is_never_moved_to_a_heavier_method():
    proposal = propose(make_spec(QWEN, method="qlora"))
    assert {c.method for c in proposal.candidates} == {"qlora"}


# --- seq_len -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seq_len", "longest", "expected"),
    [(2048, 300, 512), (2048, 10, 64), (4096, 1025, 2048), (512, 300, None), (512, 512, None), (512, 3000, None)],
)
def test_shorter_seq_len_is_the_smallest_power_of_two_that_holds_every_row(seq_len, longest, expected):
    assert shorter_seq_len(seq_len, longest) == expected


def test_shorter_seq_len_when_the_data_allows_it():
    """Short rows padded to 4,096 at batch 16: most of every micro-batch is padding; 512 holds every row."""
    spec = make_spec(QWEN, seq_len=4096, micro_batch_size=16)
    proposal = propose(spec, stats(4096, tokens_per_row=300, longest=300))
    assert {c.seq_len for c in proposal.candidates} == {4096, 512}
    assert proposal.changes["seq_len"] == [4096, 512]


@pytest.mark.parametrize("longest", [1500, 2048, 3000])
def test_seq_len_kept_when_a_row_would_not_fit_a_shorter_one(longest):
    proposal = propose(make_spec(QWEN, seq_len=2048), stats(2048, tokens_per_row=300, longest=longest))
    assert {c.seq_len for c in proposal.candidates} == {2048}
    assert "seq_len" not in proposal.changes


# --- quality levers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "fields", "data"),
    [
        (QWEN, {"seq_len": 2048}, stats(2048, tokens_per_row=300, longest=300)),
        (LLAMA, {"method": "full_finetune", "micro_batch_size": 1}, stats(512, rows=100)),
        (SMOL, {"target_gpu": "cpu", "micro_batch_size": 16, "seq_len": 2048}, stats(2048, rows=100)),
    ],
)
def test_epochs_learning_rate_and_batch_are_never_touched(model, fields, data):
    spec = make_spec(
        model, num_epochs=7, learning_rate=2e-4, gradient_accumulation_steps=4, lora_r=64, max_steps=900, **fields
    )
    proposal = propose(spec, data)
    assert proposal.changes and set(proposal.changes) <= LEVERS
    assert proposal.spec.model_dump(exclude=LEVERS) == spec.model_dump(exclude=LEVERS)


# --- the table -----------------------------------------------------------------------------------------


def test_every_candidate_in_the_table_sorted_by_cost_with_the_choice_marked():
    spec = make_spec(QWEN, micro_batch_size=16)
    proposal = propose(spec, stats(512, rows=100))
    table = proposal.candidates
    plain = [c for c in table if not c.gradient_checkpointing]
    assert {(c.gpu, c.method) for c in plain} == {(g, m) for g in CLOUD for m in ("lora", "qlora")}
    assert len(table) == len(plain) + sum(not c.fits for c in plain)  # one checkpointed try per plain miss
    fitting = [c for c in table if c.fits]
    assert table[: len(fitting)] == fitting  # what fits first, then the misses
    for part in (fitting, table[len(fitting) :]):
        assert [c.cost_usd for c in part] == sorted(c.cost_usd for c in part)
    chosen = [c for c in table if c.chosen]
    assert len(chosen) == 1
    row = chosen[0]
    assert (row.gpu, row.method, row.seq_len, row.gradient_checkpointing) == (
        proposal.spec.target_gpu,
        proposal.spec.method,
        proposal.spec.seq_len,
        proposal.spec.gradient_checkpointing,
    )
    assert row.cost_usd == proposal.estimate.estimated_cost_usd and row == fitting[0]


def test_nothing_fits_names_the_near_misses():
    spec = make_spec(LLAMA, method="full_finetune", target_gpu="cpu")
    with pytest.raises(AegisError) as caught:
        propose(spec, stats(512, rows=100))
    message = str(caught.value)
    assert message.startswith("no catalog GPU fits this job with the allowed levers (near misses: ")
    misses = re.findall(r"(cpu full_finetune(?: \+checkpointing)?) needs ([\d.]+) of 24 GB", message)
    assert [name for name, _ in misses] == ["cpu full_finetune +checkpointing", "cpu full_finetune"]
    assert 24 < float(misses[0][1]) < float(misses[1][1])  # the closest miss first
    assert "try a smaller model, a shorter seq_len or more GPUs" in message


# --- summary and determinism ---------------------------------------------------------------------------


def test_a_proposal_over_the_hard_limit_says_the_gate_will_refuse_it():
    spec = make_spec(QWEN)
    within = propose(spec)
    assert "hard limit" not in within.summary
    over = propose(spec, policy=BudgetPolicy(max_budget_usd=1, soft_threshold_usd=0.5), spent_usd=1)
    assert over.summary.endswith("It is still above the hard limit $1.00; the gate will refuse it.")


def test_optimizing_a_proposal_again_changes_nothing():
    spec = make_spec(QWEN, seq_len=2048)
    data = stats(2048, tokens_per_row=300, longest=300)
    first = propose(spec, data)
    again = propose(first.spec, data)
    assert again.changes == {} and "no change: already the cheapest" in again.summary
    assert again.spec == first.spec
    assert propose(spec, data) == first  # deterministic


def test_a_full_finetune_on_eight_gpus_is_sharded_where_a_replica_per_gpu_does_not_fit():
    """ "Full fine-tune meta-llama/Meta-Llama-3-8B on 8 H100s": a replica needs 16 bytes a weight on every GPU."""
    spec = make_spec("meta-llama/Meta-Llama-3-8B", method="full_finetune", num_gpus=8, sharding="none")
    proposal = propose(spec, stats(512, rows=2000))
    replicas = [c for c in proposal.candidates if c.method == "full_finetune" and c.sharding == "none"]
    assert replicas and not any(c.fits for c in replicas if not c.gradient_checkpointing)
    sharded = [c for c in proposal.candidates if c.sharding == "fsdp"]
    assert sharded and any(c.fits for c in sharded)
    assert all(c.sharding == "none" for c in proposal.candidates if c.method == "qlora")
    if proposal.spec.method == "full_finetune":
        assert proposal.changes["sharding"] == ["none", "fsdp"]
