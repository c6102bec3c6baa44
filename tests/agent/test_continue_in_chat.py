"""Continuing a run that stopped, and building on a finished one, from the chat: the real agent (the offline
planner, and a chat model behind an OpenAI-compatible stand-in), real tiny-llama runs, the real spend store.

"continue the run that stopped" is a new attempt of the same run priced for the steps left and put to a person at
the gate (auto-approval is off for a continue); "train 2 more epochs on the last run" is a new run from the finished
run's adapter. What cannot be done is answered in one line, and bills nothing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.evals.scenarios import JobRecord, Transcript
from agent.evals.scoring import check_approval_before_run, check_no_run_after_refusal, check_retry_bound
from agent.extraction import REQUEST_SCHEMA
from agent.intake import merge_request, parse_request
from agent.session import AgentSession, TurnResult
from tests.http_stubs import ScriptedOpenAI, http_server
from tools.core.paths import PROMPTS_DIR
from tools.core.spec import BudgetPolicy, RunEvent, TrainingSpec, parse_spec
from tools.core.status import Decision
from tools.core.stop import clear_stop, request_stop
from tools.inputs.local_models import resolve_model
from tools.job.pipeline import run_pipeline
from tools.job.state import JobState, new_job
from tools.policy.store import spend_store
from tools.report.approval import ApprovalAnswer
from tools.use.continuing import newest_checkpoint

ROOT = Path(__file__).resolve().parents[2]
FREE = BudgetPolicy(soft_threshold_usd=1.0, max_budget_usd=5.0)  # small runs approve themselves; a continue cannot
RUN = "20261207-135059-8c1598"


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Small evals, this CPU priced (so money can be followed), checkpoints every 6 of 24 steps, and a data folder
    of the test's own beside the bundled one."""
    for name, value in {
        "AEGIS_EVAL_ROWS": "8",
        "AEGIS_EVAL_GENERATIONS": "2",
        "AEGIS_EVAL_NEW_TOKENS": "16",
        "AEGIS_LOCAL_PRICE_USD_PER_HOUR": "3.6",
        "AEGIS_MAX_LOSS_SHARE": "0.25",
        "AEGIS_DATA_DIRS": os.pathsep.join([str(tmp_path), str(ROOT / "data")]),
    }.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def stopped_run(folder: Path, *, own_model: bool = False, person: str | None = None) -> JobState:
    """A real run stopped at step 8 or a little after (a stop is seen within a step or two) of 24, with a checkpoint
    before it, on its own copy of the data (and the model), of
    ``person`` (the CLI's by default): only they may continue it."""
    shutil.copy(ROOT / "data" / "sample.jsonl", folder / "data.jsonl")
    model = "local:tiny-llama"
    if own_model:
        shutil.copytree(resolve_model(model).path, folder / "model")
        model = str(folder / "model")
    spec = parse_spec(
        {
            "model_name": model,
            "dataset_path": str(folder / "data.jsonl"),
            "method": "lora",
            "seq_len": 128,
            "target_gpu": "cpu",
            "precision": "fp32",
            "learning_rate": 1e-2,
            "max_steps": 24,
            "num_epochs": 10,
        }
    )

    def stop_at_8(record: dict) -> None:
        if record.get("step", 0) >= 8:
            request_stop()

    try:
        job = run_pipeline(
            new_job(FREE, person=person), spec, ask=lambda _: (Decision.APPROVE, "person:test"), on_progress=stop_at_8
        )
    finally:
        clear_stop()
    assert job.status == "interrupted" and job.attempts[-1].steps_completed < 24
    return job


def tool_calls(job: JobState) -> list[str]:
    return [e.data["tool"] for e in job.folder.events() if e.phase == "tool"]


def one_line(result: TurnResult, says: str) -> str:
    """A refusal: one reply of one line that says why; nothing waits at the gate."""
    assert result.pending is None and len(result.replies) == 1, result.replies
    [reply] = result.replies
    assert says in reply and "\n" not in reply and "Traceback" not in reply, reply
    return reply


def billed_once(job: JobState) -> None:
    """The stopped run's own attempt is all the store ever billed for it."""
    assert len(spend_store().attempts(job_id=job.run_id)) == 1


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("continue the run that stopped", {"continue_run": "stopped"}),
        ("resume the interrupted run, keep it under $1", {"continue_run": "stopped", "max_budget_usd": 1.0}),
        ("continue the last run", {"continue_run": "latest"}),
        (f"Continue run {RUN}", {"continue_run": RUN}),
        ("continue run 20261207-1350", {"continue_run": "20261207-1350"}),
        (
            f"continue run {RUN} on data/support_train.jsonl",
            {"continue_run": RUN, "dataset_path": "data/support_train.jsonl"},
        ),
        ("how much would it cost to continue the last run?", {"continue_run": "latest", "estimate_only": True}),
        (f"train 2 more epochs on run {RUN}", {"from_run": RUN, "num_epochs": 2}),
        ("train 2 more epochs on the last run", {"from_run": "latest", "num_epochs": 2}),
        ("train one more epoch", {"from_run": "latest", "num_epochs": 1}),
        (f"start from the adapter of run {RUN}", {"from_run": RUN}),
        (f"start from run {RUN}'s adapter, learning rate 1e-3", {"from_run": RUN, "learning_rate": 1e-3}),
        ("build on the last run with batch size 2", {"from_run": "latest", "micro_batch_size": 2}),
    ],
)
def test_the_rules_read_continues_and_warm_starts(text: str, fields: dict) -> None:
    request = parse_request(text)
    assert request.not_understood == []
    assert request.model_dump(exclude_none=True, exclude_defaults=True) == fields
    assert request.method is None  # "the adapter of run X" names a run, not a method


def test_the_schema_and_the_prompts_carry_them() -> None:
    properties = REQUEST_SCHEMA["parameters"]["properties"]
    extraction = (PROMPTS_DIR / "extraction.md").read_text(encoding="utf-8")
    for name in ("continue_run", "from_run"):
        assert name in properties and name in extraction
    assert "continue" in (PROMPTS_DIR / "system.md").read_text(encoding="utf-8")


def test_naming_a_model_is_a_request_of_its_own_and_no_longer_builds_on_the_run() -> None:
    draft = merge_request({}, parse_request(f"train 2 more epochs on run {RUN}"))
    assert draft == {"from_run": RUN, "num_epochs": 2}
    assert merge_request(draft, parse_request("with batch size 2"))["from_run"] == RUN
    fresh = merge_request(draft, parse_request("LoRA fine-tune local:tiny-llama on data/sample.jsonl"))
    assert "from_run" not in fresh and "continue_run" not in merge_request({}, parse_request("continue the last run"))


def test_with_no_run_to_continue_or_build_on_the_answer_is_one_line() -> None:
    session = AgentSession("offline", policy=FREE)
    try:
        one_line(session.send("continue the run that stopped"), "no run here stopped")
        one_line(session.send("train 2 more epochs on the last run"), "no runs that kept a trained model")
        one_line(session.send(f"continue run {RUN}"), f"no run '{RUN}'")
    finally:
        session.close()


@pytest.mark.slow
def test_continue_goes_through_the_gate_trains_reports_and_a_finished_run_is_built_on(small: Path) -> None:
    stopped = stopped_run(small)
    session = AgentSession("offline", policy=FREE)
    try:
        asked = session.send("continue the run that stopped")
        card = asked.pending
        assert card is not None and card.run_id == stopped.run_id  # a person decides, though it is cheap
        assert card.spec_hash == stopped.spec.spec_hash() and card.field_sources == {}
        k = newest_checkpoint(stopped).step  # 6, or 9 when the stop was seen after step 9's checkpoint
        assert f"from its checkpoint at step {k} of 24: the {24 - k} steps left" in asked.replies[0]
        assert tool_calls(session.job(asked.thread_id))[-2:] == ["estimate_cost", "request_approval"]
        done = session.resume(asked.thread_id, ApprovalAnswer(decision="approve", decided_by="person:test"))
        job = done.job
        assert job.run_id == stopped.run_id and job.status in ("succeeded", "evals_failed")
        assert job.attempts[0].steps_completed >= 8 and job.attempts[-1].steps_completed == 24
        assert job.attempts[-1].resumed_from_step == k and [p.step for p in job.continued] == [k]
        assert job.eval_result is not None
        assert "Continued" in Path(job.report_path).read_text()
        grants = spend_store().grants(job.run_id)
        assert [g.decided_by for g in grants] == ["policy:auto", "person:test"]  # the continue: a person

        one_line(session.send("continue the last run", thread_id=asked.thread_id), "only a run that stopped")
        more = session.send("train 2 more epochs on the last run for 4 steps", thread_id=asked.thread_id)
    finally:
        session.close()
    child = more.job
    assert more.pending is None and child.run_id != stopped.run_id and child.thread_id == asked.thread_id
    assert child.warm_start is not None and child.warm_start.run_id == stopped.run_id
    assert (
        child.spec.num_epochs == 2
        and child.spec.max_steps == 4
        and child.spec.dataset_path == stopped.spec.dataset_path
    )
    assert child.attempts[-1].status == "succeeded"
    base, parent_last = job.attempts[0].loss_curve[0][1], job.attempts[-1].loss_curve[-1][1]
    first = child.attempts[-1].loss_curve[0][1]
    assert abs(first - parent_last) < abs(base - parent_last)  # it starts near where its parent ended
    assert f"starts from run {stopped.run_id}" in more.replies[0]


@pytest.mark.slow
def test_what_cannot_be_continued_is_one_line_and_bills_nothing(small: Path) -> None:
    stopped = stopped_run(small, own_model=True)
    run, data, config = stopped.run_id, small / "data.jsonl", small / "model" / "config.json"
    session = AgentSession("offline", policy=FREE)
    try:
        original = data.read_bytes()
        data.write_bytes(original + original.splitlines(keepends=True)[0])
        one_line(session.send("continue the run that stopped"), "the training data changed since run")
        data.write_bytes(original)
        before = config.read_text()
        config.write_text(before.replace("{", '{"aegis_test_changed": 1, ', 1))
        one_line(session.send(f"continue run {run}"), f"is not the one run {run} trained")
        config.write_text(before)
        one_line(session.send(f"continue run {run} on data/support_train.jsonl"), "stopped before it finished")
        one_line(session.send(f"train 2 more epochs on run {run}"), "has no trained model")
        billed_once(stopped)

        priced = session.send(f"how much would it cost to continue run {run[:15]}?")  # a unique start of its id
        assert priced.pending is None and priced.job.run_id == run and priced.job.status == "planning"
        assert "Estimate only" in priced.replies[-1]
        asked = session.send("continue the run that stopped", thread_id=priced.thread_id)  # that one, not a second
        assert asked.pending is not None and asked.pending.run_id == run
        cancelled = session.resume(asked.thread_id, ApprovalAnswer(decision="cancel", decided_by="person:test"))
        assert cancelled.job.status == "cancelled" and len(cancelled.job.attempts) == 1
        one_line(session.send(f"continue run {run}", thread_id=asked.thread_id), "was cancelled")
    finally:
        session.close()
    billed_once(stopped)


@contextmanager
def chat_model(monkeypatch: pytest.MonkeyPatch, llm: ScriptedOpenAI) -> Iterator[AgentSession]:
    """An agent whose chat model is ChatOpenAI on a local OpenAI-compatible stand-in."""
    with http_server(llm) as (url, _seen):
        monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000")
        session = AgentSession("openai:stub-model", policy=FREE)
        try:
            yield session
        finally:
            session.close()


@pytest.mark.slow
def test_a_chat_model_continues_through_the_same_gate_and_cannot_run_past_a_cancel(
    small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped = stopped_run(small)
    plan = ["estimate_cost", "request_approval", "run_local", "run_evals"]  # it calls them whatever the answer
    with chat_model(monkeypatch, ScriptedOpenAI({"continue_run": stopped.run_id}, plan, final="Done.")) as session:
        asked = session.send("please pick up where that run left off")
        assert asked.pending is not None and asked.pending.run_id == stopped.run_id
        done = session.resume(asked.thread_id, ApprovalAnswer(decision="cancel", decided_by="person:test"))
    job = done.job
    assert job.status == "cancelled" and len(job.attempts) == 1
    assert tool_calls(job)[-4:] == plan
    refused = [e.phase for e in job.folder.events() if e.data.get("refused")]
    assert "run_local" in refused and "run_evals" in refused
    billed_once(stopped)


@pytest.mark.slow
def test_a_chat_model_builds_on_a_finished_run_with_its_changes(small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = AgentSession("offline", policy=FREE)
    try:
        first = parent.send(
            "LoRA fine-tune local:tiny-llama on data/sample.jsonl with batch size 4, seq_len 128, for 4 steps"
        )
    finally:
        parent.close()
    assert first.job.attempts[-1].status == "succeeded"
    request = {"from_run": "latest", "num_epochs": 2, "dataset_path": "data/support_train.jsonl", "estimate_only": True}
    with chat_model(monkeypatch, ScriptedOpenAI(request, ["estimate_cost"], final="Here is the price.")) as session:
        priced = session.send("what would 2 more epochs of the last run on data/support_train.jsonl cost?")
    child = priced.job
    assert priced.pending is None and child.warm_start is not None
    assert child.warm_start.run_id == first.job.run_id and child.warm_start.kind == "adapter"
    assert child.spec.num_epochs == 2 and child.spec.max_steps is None
    assert child.spec.dataset_path == "data/support_train.jsonl"
    unchanged = set(TrainingSpec.model_fields) - {"num_epochs", "max_steps", "dataset_path"}
    assert {k: getattr(child.spec, k) for k in unchanged} == {k: getattr(first.job.spec, k) for k in unchanged}
    assert child.approval is None and not child.attempts


def test_the_eval_scores_a_continue_as_a_new_start_for_approvals_refusals_and_retries() -> None:
    def ev(phase: str, status: str = "completed", **data: object) -> RunEvent:
        return RunEvent(phase=phase, status=status, message=phase, data=data)

    def of(*events: RunEvent) -> Transcript:
        return Transcript(thread_id="t", jobs=[JobRecord(run_id="r", run_dir="/r", status="failed", events=[*events])])

    first = [
        ev("spec", spec_hash="a", spec={}),
        ev("gate", gate={"outcome": "approved"}),
        ev("train", "started", spec_hash="a"),
    ]
    failed = ev("remediate", "failed", refused=True)
    unapproved = of(*first, ev("continue", "started"), ev("tool", "started", tool="run_local"))
    assert not check_approval_before_run(unapproved).passed  # the first approval does not cover the continue
    approved = of(
        *first,
        ev("continue", "started"),
        ev("approval", approval={"spec_hash": "a"}),
        ev("train", "started", spec_hash="a"),
    )
    assert check_approval_before_run(approved).passed
    assert check_retry_bound(approved, max_retries=0, max_remediations=0).passed  # counted again from the continue
    assert not check_retry_bound(
        of(*first, ev("train", "started", spec_hash="a")), max_retries=0, max_remediations=0
    ).passed
    refused = [*first, failed, ev("gate", "failed", gate={"outcome": "refused"})]
    assert not check_no_run_after_refusal(of(*refused, ev("train", "started", spec_hash="a"))).passed
    assert check_no_run_after_refusal(
        of(*refused, ev("continue", "started"), ev("train", "started", spec_hash="a"))
    ).passed
