"""Issue 17: a job that cannot run as asked (does not fit; over the hard limit) ends with the optimizer's
cheapest spec, the candidates table (every GPU and lever tried, sorted by cost, the chosen one marked, the
near misses named) and a person who can take it; it is never auto-approved, since nobody asked for it.
"""

from __future__ import annotations

import re

import pytest

from agent.cli import main
from agent.session import AgentSession
from tools.core.spec import BudgetPolicy
from tools.core.status import Decision
from tools.report.approval import ApprovalAnswer

pytestmark = pytest.mark.usefixtures("gpu_cloud")  # GPU targets run on a stand-in for Modal's cloud

DOES_NOT_FIT = "Full fine-tune of meta-llama/Llama-2-7b-hf on data/sample.jsonl, max 3 steps, on an A10G"
OVER_LIMIT = "LoRA fine-tune local:tiny-llama on data/sample.jsonl, batch size 2, seq_len 128, 3 steps on a b200"


def test_a_job_that_does_not_fit_is_offered_the_optimizers_spec_with_the_table():
    session = AgentSession("offline", policy=BudgetPolicy())  # would auto-approve a cheap run on its own
    try:
        result = session.send(DOES_NOT_FIT)
    finally:
        session.close()
    pending = result.pending
    assert pending is not None, result.replies  # a person decides: not refused, not auto-approved
    offer = pending.optimization
    assert offer is not None and "does not fit" in offer.refused_because
    assert pending.spec.method != "full_finetune" or pending.spec.target_gpu != "a10g"
    assert pending.fits and pending.spec.spec_hash() == offer.spec_hash
    chosen = [c for c in offer.candidates if c.chosen]
    assert len(chosen) == 1 and chosen[0].gpu == pending.spec.target_gpu and chosen[0].fits
    fitting = [c.cost_usd for c in offer.candidates if c.fits]
    assert fitting == sorted(fitting) and chosen[0].cost_usd == fitting[0]
    assert {c.gpu for c in offer.candidates} >= {"t4", "l4", "a10g", "h100"}  # every GPU tried
    table = offer.table()
    assert "→ chosen" in table and "Near misses:" in table
    assert "auto-approve is off" in pending.reason
    changed = {k for k, v in pending.field_sources.items() if v == "changed by Aegis"}
    assert changed == set(offer.changes) and pending.field_sources["model_name"] == "you"
    events = result.job.folder.events()
    assert any(e.phase == "optimize" and e.data.get("offer") for e in events)


def test_over_the_hard_limit_the_cheaper_gpu_is_offered_and_the_person_can_take_it():
    session = AgentSession("offline", policy=BudgetPolicy(max_budget_usd=0.02, soft_threshold_usd=0.01))
    try:
        first = session.send(OVER_LIMIT)
        assert first.pending is not None and first.pending.optimization is not None, first.replies
        assert "hard limit" in first.pending.optimization.refused_because
        assert first.pending.spec.target_gpu != "b200"
        answer = ApprovalAnswer(decision=Decision.APPROVE, decided_by="person:test")
        taken = session.resume(first.thread_id, answer)
    finally:
        session.close()
    job = taken.job
    assert job.decided_by == "person:test" and job.attempts and job.attempts[-1].status == "succeeded"


def test_the_cli_shows_the_offer_and_resume_approve_takes_it(capsys):
    assert main(["run", DOES_NOT_FIT]) == 3
    out = capsys.readouterr().out
    assert "optimizer proposes" in out and "chosen" in out and "Near misses" in out
    thread = re.search(r"aegis resume (\S+) --approve", out).group(1)
    main(["resume", thread, "--approve"])
    out, err = capsys.readouterr()
    assert "approved by person:cli" in out and "Traceback" not in out + err
