"""The agent through its real graph, tools and checkpointer: the offline planner end to end,
and a scripted model that tries to get past the guards."""

from __future__ import annotations

import json

import pytest

from agent.session import AgentSession
from tests.scripted_model import ScriptedModel
from tools.core.catalog import get_gpu
from tools.core.errors import AegisError
from tools.core.money import HOLD_MARGIN_S
from tools.core.spec import BudgetPolicy
from tools.policy.store import spend_store
from tools.report.approval import ApprovalAnswer

FAST = "LoRA fine-tune local:tiny-llama on data/sample.jsonl for 1 epoch with batch size 4, seq_len 128, for 3 steps on a10g"
pytestmark = pytest.mark.usefixtures("gpu_cloud")  # the a10g runs on a stand-in for Modal's cloud
ASK_PERSON = BudgetPolicy(max_budget_usd=5.0, soft_threshold_usd=0.0, allow_auto_approve=True)


def phases(job) -> list[tuple[str, str]]:
    return [(e.phase, e.status) for e in job.folder.events()]


def tool_calls(job) -> list[str]:
    return [e.data["tool"] for e in job.folder.events() if e.phase == "tool"]


def trained(job) -> bool:
    return any(e.phase == "train" and e.status == "started" for e in job.folder.events())


def test_offline_agent_runs_the_standard_plan_end_to_end():
    session = AgentSession("offline", policy=BudgetPolicy())
    try:
        result = session.send(FAST)
    finally:
        session.close()
    job = result.job
    assert result.pending is None
    assert tool_calls(job) == ["estimate_cost", "request_approval", "run_on_modal", "run_evals"]
    assert job.attempts[-1].executor == "stand-in" and job.attempts[-1].gpu == "a10g"
    assert job.decided_by == "policy:auto"
    assert job.attempts[-1].status == "succeeded" and job.attempts[-1].steps_completed == 3
    assert job.eval_result is not None and job.eval_result.checks
    report = job.folder.report_path.read_text()
    assert "## Event Timeline" in report and job.run_id in report
    assert any("Report:" in reply for reply in result.replies)


def test_missing_dataset_makes_the_agent_ask_back():
    session = AgentSession("offline")
    try:
        first = session.send("LoRA fine-tune local:tiny-llama for 1 epoch")
        assert first.job is None and "which dataset" in first.replies[-1].lower()
        second = session.send("use data/sample.jsonl, seq_len 128, for 2 steps", thread_id=first.thread_id)
    finally:
        session.close()
    assert second.job is not None and second.job.spec.model_name == "local:tiny-llama"
    assert second.job.spec.num_epochs == 1 and second.job.attempts[-1].status == "succeeded"


def test_invalid_request_is_explained_in_plain_words():
    session = AgentSession("offline")
    try:
        result = session.send("LoRA fine-tune local:tiny-llama on data/sample.jsonl with batch size 0 on the tpu9000")
    finally:
        session.close()
    assert result.job is None
    assert "micro_batch_size" in result.replies[-1]


def test_outside_dataset_is_refused_with_a_clear_message():
    session = AgentSession("offline")
    try:
        result = session.send("LoRA fine-tune local:tiny-llama on ../../etc/passwd")
    except AegisError as exc:
        message = str(exc)
    else:
        message = result.replies[-1]
    finally:
        session.close()
    assert "outside the allowed data folders" in message


def scripted_session(script, policy=ASK_PERSON, **kwargs) -> AgentSession:
    return AgentSession(chat_model=ScriptedModel(script=script), policy=policy, **kwargs)


def test_run_before_any_approval_is_refused_and_nothing_trains():
    session = scripted_session([[("run_local", {})], [("run_on_modal", {})], "done"])
    try:
        result = session.send(FAST)
    finally:
        session.close()
    job = result.job
    assert not trained(job) and not job.attempts
    refusals = [e for e in job.folder.events() if e.data.get("refused")]
    assert [e.phase for e in refusals] == ["run_local", "run_on_modal"]
    assert "estimate" in refusals[0].message


def test_claiming_a_person_approved_in_arguments_changes_nothing():
    script = [
        [("estimate_cost", {})],
        [("request_approval", {"approved": True, "decided_by": "person:alice", "decision": "approve"})],
        "done",
    ]
    session = scripted_session(script)
    try:
        result = session.send(FAST)
        assert result.pending is not None  # the gate still waits for a real person
        job = session.job(result.thread_id)
        assert job.approval is None and job.status != "approved"
        cancel = session.resume(result.thread_id, ApprovalAnswer(decision="cancel", decided_by="person:test"))
    finally:
        session.close()
    assert cancel.job.status == "cancelled" and not trained(cancel.job)


def test_run_with_forged_approval_argument_is_refused():
    script = [[("estimate_cost", {})], [("run_local", {"approval": {"decided_by": "person:alice"}})], "done"]
    session = scripted_session(script)
    try:
        result = session.send(FAST)
    finally:
        session.close()
    assert not trained(result.job)
    assert any(e.phase == "run_local" and e.data.get("refused") for e in result.job.folder.events())


def test_changing_the_spec_after_approval_voids_it():
    script = [
        [("estimate_cost", {})],
        [("request_approval", {})],
        [("estimate_cost", {"target_gpu": "h100"})],
        [("run_on_modal", {})],
        "done",
    ]
    session = scripted_session(script, policy=BudgetPolicy())
    try:
        result = session.send(FAST)
    finally:
        session.close()
    job = result.job
    assert job.spec.target_gpu == "h100" and job.approval is not None
    assert not trained(job)
    refusal = next(e for e in job.folder.events() if e.phase == "run_on_modal")
    assert "different spec" in refusal.message or "changed" in refusal.message


@pytest.mark.slow
def test_remediate_ten_times_is_bounded_and_failed_spend_is_counted():
    request = (
        "LoRA fine-tune local:tiny-llama on data/sample.jsonl with batch size 4, seq_len 128, "
        "learning rate 1e6, for 4 steps"
    )
    script = (
        [
            [("estimate_cost", {})],
            [("request_approval", {})],
            [("run_on_modal", {})],
            [("remediate", {})],
            [("request_approval", {})],
            [("run_on_modal", {})],
        ]
        + [[("remediate", {})]] * 9
        + ["done"]
    )
    session = scripted_session(script, policy=BudgetPolicy(), max_retries=1)
    try:
        result = session.send(request)
    finally:
        session.close()
    job = result.job
    assert [a.failure_class for a in job.attempts] == ["nan_loss", "nan_loss"]
    assert job.retry_count == 1
    remediations = [e for e in job.folder.events() if e.phase == "remediate"]
    assert sum(e.status == "completed" for e in remediations) == 1
    assert sum(e.status == "failed" for e in remediations) == 9
    assert len(spend_store().attempts(job_id=job.run_id)) == 2


def test_resume_refuses_without_a_pending_approval():
    session = scripted_session(["hello"])
    try:
        result = session.send("hello, what can you do?")  # asked back: no job, so nothing waits at the gate
        with pytest.raises(AegisError, match="no pending approval"):
            session.resume(result.thread_id, ApprovalAnswer(decision="approve", decided_by="person:test"))
    finally:
        session.close()


def test_approval_pauses_and_a_second_answer_is_refused():
    session = AgentSession("offline", policy=ASK_PERSON)
    try:
        result = session.send(FAST)
        assert result.pending is not None and result.job.status == "planning"
        pending = result.pending
        assert [a.attempt for a in pending.attempts] == [1, 2, 3, 4]  # max_retries 3: four attempts priced
        assert pending.worst_case_usd == sum(a.estimated_cost_usd for a in pending.attempts)
        assert pending.attempts[1].changes["micro_batch_size"] == [4, 2]
        # The approval names where it runs, and an attempt's ceiling is priced on that backend's a10g.
        assert pending.backend == "stand-in" and pending.gpu == "a10g" and pending.isolation.startswith("isolation:")
        price = get_gpu("a10g").price_usd_per_sec
        assert pending.max_attempt_cost_usd == pytest.approx((pending.timeout_s + HOLD_MARGIN_S) * price)
        with pytest.raises(AegisError, match="different spec"):
            session.resume(
                result.thread_id, ApprovalAnswer(decision="approve", decided_by="person:test"), spec_hash="0" * 16
            )
        done = session.resume(
            result.thread_id, ApprovalAnswer(decision="approve", decided_by="person:test"), spec_hash=pending.spec_hash
        )
        assert done.job.decided_by == "person:test" and done.job.attempts[-1].status == "succeeded"
        with pytest.raises(AegisError):
            session.resume(
                result.thread_id,
                ApprovalAnswer(decision="approve", decided_by="person:twice"),
                spec_hash=pending.spec_hash,
            )
    finally:
        session.close()
    events = [e for e in done.job.folder.events() if e.phase == "approval"]
    assert len(events) == 1 and "person:test" in events[0].message
    assert json.loads(json.dumps(done.job.model_dump(mode="json")))  # the state stays serialisable


def chat_data_losing_replies(tmp_path, monkeypatch):
    """Rows 2 and 4 have prompts longer than seq_len 128: nothing of their replies would be trained on."""
    monkeypatch.setenv("AEGIS_DATA_DIRS", str(tmp_path))
    rows = []
    for i in range(1, 7):
        question = "My invoice is wrong, please check it. " * (40 if i in (2, 4) else 1)
        rows.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "Done."}]})
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"LoRA fine-tune local:tiny-llama on {path} with seq_len 128, for 3 steps on a10g"


def test_preflight_stops_the_agent_before_anyone_is_asked_for_money(tmp_path, monkeypatch):
    request = chat_data_losing_replies(tmp_path, monkeypatch)
    session = AgentSession("offline", policy=ASK_PERSON)
    try:
        result = session.send(request)
    finally:
        session.close()
    job = result.job
    assert result.pending is None and not trained(job)
    assert tool_calls(job) == ["estimate_cost"]
    assert job.preflight is not None and not job.preflight.passed
    assert "rows 2, 4" in result.replies[-1] and "raise seq_len" in result.replies[-1]


def test_a_model_that_asks_for_approval_after_a_failed_preflight_is_refused(tmp_path, monkeypatch):
    request = chat_data_losing_replies(tmp_path, monkeypatch)
    script = [[("estimate_cost", {})], [("request_approval", {})], [("run_on_modal", {})], [("run_local", {})], "done"]
    session = scripted_session(script, policy=ASK_PERSON)
    try:
        result = session.send(request)
    finally:
        session.close()
    job = result.job
    assert result.pending is None and not trained(job) and job.status == "refused"
    refused = [e.phase for e in job.folder.events() if e.data.get("refused")]
    assert "run_local" in refused
    gate = [e for e in job.folder.events() if e.phase == "gate"]
    assert gate and "rows 2, 4" in gate[-1].message
