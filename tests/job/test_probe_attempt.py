"""The probe attempt: a few measured steps, approved and billed like any attempt, re-price the run before the
person approves it. This machine is priced through AEGIS_LOCAL_PRICE_USD_PER_HOUR, so its CPU is a paid target
and the probe goes through the real gate, spend store and executor."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.core.spec import BudgetPolicy, CostEstimate, TrainingSpec
from tools.core.status import Decision, JobStatus
from tools.job.pipeline import run_pipeline
from tools.job.state import JobState, new_job
from tools.policy.store import spend_store

DATA = Path(__file__).resolve().parents[2] / "data" / "sample.jsonl"
PROBE_STEPS = 3


def _spec() -> TrainingSpec:
    return TrainingSpec(
        model_name="local:tiny-llama",
        dataset_path=str(DATA),
        method="lora",
        target_gpu="cpu",
        micro_batch_size=4,
        seq_len=128,
        max_steps=8,
        precision="fp32",
        learning_rate=1e-3,
    )


class Person:
    """Answers every question at the gate as told, and remembers what it was shown."""

    def __init__(self, *answers: Decision) -> None:
        self.answers = list(answers)
        self.shown: list[JobState] = []

    def __call__(self, job: JobState) -> tuple[Decision, str]:
        self.shown.append(job)
        return self.answers.pop(0), "person:test"


@pytest.fixture
def priced_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEGIS_LOCAL_PRICE_USD_PER_HOUR", "36")  # a cent a second: every attempt costs something


@pytest.mark.slow
def test_the_probe_is_approved_and_billed_then_the_run_is_asked_for_again_at_a_measured_price(priced_cpu) -> None:
    person = Person(Decision.APPROVE, Decision.APPROVE)
    policy = BudgetPolicy(soft_threshold_usd=0.0, max_budget_usd=50.0)  # a person answers every spend
    job = run_pipeline(new_job(policy), _spec(), ask=person, probe_steps=PROBE_STEPS)

    probe_asked, run_asked = person.shown
    assert probe_asked.spec.max_steps == PROBE_STEPS and probe_asked.spec.eval_split == 0.0
    assert run_asked.spec == _spec()
    estimates = [e for e in job.folder.events() if e.phase == "estimate" and e.status == "completed"]
    first = estimates[0].data["estimate"]  # the full spec, before the probe: modelled (the machine is priced)
    assert first["cost_breakdown"]["time_source"] == "modelled"
    assert run_asked.estimate.cost_breakdown.time_source.startswith("measured: probe attempt of 3 steps")
    assert run_asked.estimate.estimate_hash() != CostEstimate.model_validate(first).estimate_hash()
    # Like with like: both modelled, the 3-step probe is priced below the 8-step run. (Against the measured price
    # it need not be: a fast machine starts and steps quicker than the model's CPU figures.)
    assert probe_asked.estimate.estimated_cost_usd < CostEstimate.model_validate(first).estimated_cost_usd
    assert not (job.folder.root / "probe").exists()  # nothing trained here before a person said yes

    attempts = spend_store().attempts(job_id=job.run_id)
    assert len(attempts) == 2 and all(a.captured_usd and a.captured_usd > 0 for a in attempts)  # both billed
    grants = spend_store().grants(job.run_id)
    assert [g.binding.spec_hash for g in grants] == [probe_asked.spec.spec_hash(), _spec().spec_hash()]
    assert [a.steps_completed for a in job.attempts] == [PROBE_STEPS, 8]  # the probe, then the full run


@pytest.mark.slow
def test_a_person_who_declines_the_probe_starts_nothing(priced_cpu) -> None:
    person = Person(Decision.CANCEL)
    policy = BudgetPolicy(soft_threshold_usd=0.0, max_budget_usd=50.0)
    job = run_pipeline(new_job(policy), _spec(), ask=person, probe_steps=PROBE_STEPS)
    assert len(person.shown) == 1 and job.attempts == [] and spend_store().attempts(job_id=job.run_id) == []
    assert job.status == JobStatus.CANCELLED
