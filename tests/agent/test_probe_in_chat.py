"""A person who asks to measure first gets a probe attempt from the chat agent too: the short run is asked
for, run and billed on its own, and the full run is then asked for again at its measured price. This machine
is priced through AEGIS_LOCAL_PRICE_USD_PER_HOUR, so its CPU is a paid target, as a GPU would be."""

from __future__ import annotations

import pytest

from agent.session import AgentSession
from tools.core.spec import BudgetPolicy
from tools.policy.store import spend_store
from tools.report.approval import ApprovalAnswer

ASK = BudgetPolicy(soft_threshold_usd=0.0, max_budget_usd=50.0)  # a person answers every spend
REQUEST = (
    "LoRA fine-tune local:tiny-llama on data/sample.jsonl with batch size 4, seq_len 128, for 8 steps, "
    "in fp32, on the cpu; probe 3 steps first"
)


@pytest.fixture
def priced_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEGIS_LOCAL_PRICE_USD_PER_HOUR", "36")  # a cent a second


@pytest.mark.slow
def test_asked_to_measure_first_the_agent_runs_a_billed_probe_then_asks_again_at_the_measured_price(
    priced_cpu,
) -> None:
    session = AgentSession("offline", policy=ASK)
    try:
        first = session.send(REQUEST)
        probe = first.pending
        assert probe is not None and probe.spec.max_steps == 3 and probe.time_source == "modelled"
        second = session.resume(first.thread_id, ApprovalAnswer(decision="approve", decided_by="person:test"))
        full = second.pending
        assert full is not None and full.spec.max_steps == 8 and probe.spec.eval_split == 0.0
        assert full.time_source.startswith("measured: probe attempt of 3 steps")
        done = session.resume(first.thread_id, ApprovalAnswer(decision="approve", decided_by="person:test"))
    finally:
        session.close()
    job = done.job
    assert [a.steps_completed for a in job.attempts] == [3, 8] and job.eval_result is not None
    attempts = spend_store().attempts(job_id=job.run_id)
    assert len(attempts) == 2 and all(a.captured_usd and a.captured_usd > 0 for a in attempts)  # both billed
    grants = spend_store().grants(job.run_id)
    assert [g.binding.spec_hash for g in grants] == [probe.spec_hash, full.spec_hash]
    answer = "\n".join(second.replies + done.replies)
    assert "Probe attempt 1" in answer and "re-priced" in answer


@pytest.mark.slow
def test_a_run_that_costs_nothing_is_not_probed() -> None:
    session = AgentSession("offline", policy=BudgetPolicy(soft_threshold_usd=1.0, max_budget_usd=5.0))
    try:
        done = session.send(REQUEST.replace("for 8 steps", "for 2 steps"))
    finally:
        session.close()
    assert [a.steps_completed for a in done.job.attempts] == [2]  # the run itself, no probe attempt before it
