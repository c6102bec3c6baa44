"""The hard limit counts money already spent: a retry that would cross it is refused before it starts.

Local runs cost nothing, so the paid backend is played by a stand-in for Modal's cloud (which cannot run
here, tests/stand_ins.py): it runs the real rendered script on this CPU under a memory limit, so the
out-of-memory failures are real, and bills each attempt what the estimator priced it at on the A10G.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.stand_ins import PaidGpuStandIn
from tools.core.catalog import get_gpu
from tools.core.money import minimum_hold_usd
from tools.core.spec import BudgetPolicy, parse_spec
from tools.inputs.prepared import prepare
from tools.job.pipeline import run_pipeline
from tools.job.state import new_job
from tools.plan.estimator import estimate
from tools.plan.worst_case import plan_worst_case
from tools.policy.store import spend_store
from tools.run.backend import register, unregister

ROOT = Path(__file__).resolve().parents[2]
# Peak RSS of a tiny-llama LoRA step at seq_len 1024: batch 8 ≈ 1.6 GB, batch 4 ≈ 1.2 GB, batch 2 ≈ 0.9 GB.
MEMORY_LIMIT_MB = 1000


@pytest.mark.slow
def test_a_budget_for_one_retry_refuses_the_second_before_it_starts(tmp_path):
    stand_in = PaidGpuStandIn(memory_limit_mb=MEMORY_LIMIT_MB)
    register(stand_in)
    try:
        _one_retry_then_refused(tmp_path)
    finally:
        unregister(stand_in.name)


def _one_retry_then_refused(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "model_name": "local:tiny-llama",
            "dataset_path": str(ROOT / "data/sample.jsonl"),
            "method": "lora",
            "micro_batch_size": 8,
            "seq_len": 1024,
            "max_steps": 2,
            "learning_rate": 1e-3,
            "target_gpu": "a10g",
        }
    )
    prepared = prepare(spec, tmp_path / "data")
    inputs = {"dataset_stats": prepared.data.stats, "model_config": prepared.config()}
    first = estimate(spec, **inputs)
    price = get_gpu("a10g").price_usd_per_sec
    roomy = BudgetPolicy(soft_threshold_usd=0.0, max_budget_usd=100.0)
    planned = plan_worst_case(
        spec, first, roomy, max_retries=3, spent_usd=0.0, price_usd_per_s=price, **inputs
    ).attempts
    costs = [a.estimated_cost_usd for a in planned]
    assert len(costs) == 4
    # Enough for the first attempt's bill and the least the retry's time limit may bill; not for a third attempt.
    retry_hold = minimum_hold_usd(planned[1].estimated_minutes * 60, price)
    policy = BudgetPolicy(soft_threshold_usd=0.0, max_budget_usd=costs[0] + retry_hold * 1.01)
    assert (
        plan_worst_case(
            spec, first, policy, max_retries=3, spent_usd=0.0, price_usd_per_s=price, **inputs
        ).retries_budget_allows
        == 1
    )

    asked = []

    def person(job):
        asked.append(job.estimate.estimated_cost_usd)
        return "approve", "person:test"

    job = run_pipeline(new_job(policy), spec, ask=person)

    assert [a.failure_class for a in job.attempts] == ["oom", "oom"]
    assert len(asked) == 2  # the first attempt and the one retry; the second retry never reached a person
    assert job.status == "refused"
    spent = sum(a.actual_cost_usd for a in job.attempts)
    assert sum(a.captured_usd or 0.0 for a in spend_store().attempts(job_id=job.run_id)) == pytest.approx(spent)
    refusal = [e for e in job.folder.events() if e.phase == "gate" and e.status == "failed"]
    assert len(refusal) == 1
    gate = refusal[0].data["gate"]
    assert gate["outcome"] == "refused" and gate["spent_usd"] == pytest.approx(spent)
    assert "exceeds the hard limit" in refusal[0].message
    trains = [e for e in job.folder.events() if e.phase == "train" and e.status == "started"]
    assert len(trains) == 2
