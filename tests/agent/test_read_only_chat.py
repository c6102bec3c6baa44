"""The chat does what the CLI does without a job: help, the runs, a comparison, rows of a dataset, a try, a report.

Through the real AgentSession with the offline planner (and a chat model behind the OpenAI-compatible stand-in):
each request is answered, every refusal is one line, and none of them makes a job, asks for approval or spends.
A read-only request while the thread waits at the gate leaves the pending request as it was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.browse import MAX_PROMPT_CHARS, MAX_ROWS, pick_run
from agent.intake import parse_request
from agent.session import AgentSession, TurnResult
from tests.http_stubs import ScriptedOpenAI, http_server
from tools.core.errors import AegisError
from tools.core.paths import runs_dir
from tools.core.spec import BudgetPolicy
from tools.policy.store import spend_store
from tools.report.approval import ApprovalAnswer
from tools.use.runs import run_folders

ASK_PERSON = BudgetPolicy(soft_threshold_usd=0.0, max_budget_usd=5.0)
FREE = BudgetPolicy(soft_threshold_usd=1.0, max_budget_usd=5.0)
JOB = "LoRA fine-tune local:tiny-llama on data/sample.jsonl with batch size 4, seq_len 128, for 3 steps on cpu"
READ_ONLY = {
    "help": {"read_only": "help"},
    "What can you do?": {"read_only": "help"},
    "what runs do I have?": {"read_only": "list_runs"},
    "list my runs": {"read_only": "list_runs"},
    "compare the last two runs": {"read_only": "compare_runs", "runs": ["latest", "previous"]},
    "compare run 20261207-aaa and run 20261207-bbb": {
        "read_only": "compare_runs",
        "runs": ["20261207-aaa", "20261207-bbb"],
    },
    "show me the first 3 rows of data/sample.jsonl": {
        "read_only": "preview_data",
        "dataset_path": "data/sample.jsonl",
        "rows": 3,
    },
    "preview data/x.jsonl": {"read_only": "preview_data", "dataset_path": "data/x.jsonl"},
    "try run 20261207-aaa with: What is 2 + 2? Answer in 3 epochs": {
        "read_only": "try_run",
        "runs": ["20261207-aaa"],
        "prompt": "What is 2 + 2? Answer in 3 epochs",
    },
    "try the last run with: hello": {"read_only": "try_run", "runs": ["latest"], "prompt": "hello"},
    "show the report of run 20261207-aaa": {"read_only": "show_report", "runs": ["20261207-aaa"]},
    "show the last report": {"read_only": "show_report", "runs": ["latest"]},
}


@pytest.fixture
def session() -> Iterator[AgentSession]:
    chat = AgentSession("offline", policy=ASK_PERSON)
    try:
        yield chat
    finally:
        chat.close()


@pytest.fixture
def priced(monkeypatch: pytest.MonkeyPatch) -> None:
    """This CPU priced, so a run costs money and the gate asks a person; evals kept small."""
    for name, value in {
        "AEGIS_LOCAL_PRICE_USD_PER_HOUR": "3.6",
        "AEGIS_EVAL_ROWS": "8",
        "AEGIS_EVAL_GENERATIONS": "2",
        "AEGIS_EVAL_NEW_TOKENS": "16",
    }.items():
        monkeypatch.setenv(name, value)


def fake_runs(*names: str) -> None:
    """Run folders as a run leaves them before its first event is read: enough to be listed and named."""
    for name in names:
        folder = runs_dir() / name
        folder.mkdir(parents=True)
        (folder / "events.jsonl").write_text("", encoding="utf-8")


def answered(result: TurnResult) -> str:
    """The one reply of a read-only turn, after checking it made no job and asked for nothing."""
    assert result.job is None and result.pending is None
    assert len(result.replies) == 1
    return result.replies[0]


def refusal(result: TurnResult) -> str:
    text = answered(result)
    assert text.startswith("I can't show that:") and "\n" not in text
    return text


@pytest.mark.parametrize(("text", "fields"), READ_ONLY.items())
def test_the_offline_rules_read_each_read_only_request(text: str, fields: dict) -> None:
    request = parse_request(text)
    assert request.model_dump(include=set(fields)) == fields
    assert not request.not_understood and request.num_epochs is None and request.method is None


def test_a_fine_tune_request_is_not_read_as_a_read_only_one() -> None:
    for text in (
        JOB,
        "try lora on data/sample.jsonl for 1 epoch",
        "help me fine-tune local:tiny-llama on data/sample.jsonl",
    ):
        assert parse_request(text).read_only is None


def test_help_says_what_it_can_do_and_which_planner_reads(session: AgentSession) -> None:
    text = answered(session.send("help"))
    assert "rule-based planner" in text and "what runs do I have?" in text and "show me the first 3 rows" in text


def test_the_rows_of_a_dataset_with_format_count_and_token_lengths(session: AgentSession) -> None:
    events: list[dict] = []
    text = answered(session.send("show me the first 3 rows of data/sample.jsonl", on_event=events.append))
    first = json.loads(Path("data/sample.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert "351 rows" in text and "format **instruction**" in text and first["input"][:40] in text
    assert text.count("\n| ") == 4  # the head and three rows
    assert "Token lengths" in text and "min " in text and "mean " in text and "max " in text
    assert [e["kind"] for e in events] == ["tool_call", "tool_result", "message"]
    assert events[0]["name"] == "preview_data" and events[0]["args"] == {"path": "data/sample.jsonl", "rows": 3}
    assert run_folders() == []  # no job, so no run folder


def test_the_tokenizer_named_measures_the_rows(session: AgentSession) -> None:
    text = answered(session.send("preview data/sample.jsonl with local:tiny-llama"))
    assert "approx:chars/4" not in text and "counted with" in text


def test_hostile_previews_are_bounded_or_refused_in_one_line(session: AgentSession) -> None:
    text = answered(session.send("show me the first 100000 rows of data/sample.jsonl"))
    assert f"at most {MAX_ROWS} are shown" in text and text.count("\n| ") == MAX_ROWS + 1
    outside = refusal(session.send("show me the first 3 rows of /etc/passwd.jsonl"))
    assert "outside the allowed data folders" in outside
    assert "does not exist" in refusal(session.send("preview data/no-such-file.jsonl"))
    assert "outside the allowed data folders" in refusal(session.send("preview ../../../../etc/shadow.csv"))
    assert run_folders() == []


def test_runs_listed_compared_and_reported_and_the_wrong_ones_refused(session: AgentSession) -> None:
    assert "No runs here yet" in answered(session.send("what runs do I have?"))
    assert "there are no runs" in refusal(session.send("compare the last two runs"))
    fake_runs("20261207-100000-aaaaaa", "20261207-100001-bbbbbb")
    listed = answered(session.send("what runs do I have?"))
    assert "2 run(s) here, newest first" in listed
    assert "20261207-100000-aaaaaa" in listed and "20261207-100001-bbbbbb" in listed
    compared = answered(session.send("compare the last two runs"))
    assert "**A**" in compared and "**Metrics**" in compared and "outcome" in compared
    both = answered(session.send("compare run 20261207-100000 and run 20261207-100001"))
    assert both.index("20261207-100000-aaaaaa") < both.index("20261207-100001-bbbbbb")
    assert "names 2 runs" in refusal(session.send("show the report of run 20261207-1000"))
    assert "no run 'nope123'" in refusal(session.send("show the report of run nope123"))
    assert "has no report yet" in refusal(session.send("show the last report"))
    assert "has no trained model" in refusal(session.send("try the last run with: hello"))
    assert "both name run" in refusal(session.send("compare run 20261207-100000 and run 20261207-100000-aaaaaa"))
    assert len(run_folders()) == 2  # nothing made a run


def test_a_try_prompt_is_length_bounded_before_any_model_loads(session: AgentSession) -> None:
    fake_runs("20261207-100000-aaaaaa")
    long = "why " * (MAX_PROMPT_CHARS // 4 + 1)
    assert f"at most {MAX_PROMPT_CHARS} are tried" in refusal(session.send(f"try the last run with: {long}"))


def test_a_run_reference_with_odd_characters_is_refused_in_one_line() -> None:
    with pytest.raises(AegisError, match="is not a run id") as caught:
        pick_run("../../etc\nrm -rf /")
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_a_read_only_request_while_waiting_at_the_gate_keeps_the_pending_request(
    session: AgentSession, priced: None
) -> None:
    asked = session.send(JOB)
    pending = asked.pending
    assert pending is not None
    events: list[dict] = []
    listed = session.send("what runs do I have?", thread_id=asked.thread_id, on_event=events.append)
    assert listed.pending is not None and listed.pending.request_id == pending.request_id
    assert pending.run_id in listed.replies[0] and "in progress" in listed.replies[0]
    assert [e["kind"] for e in events] == ["tool_call", "tool_result", "message"]
    rows = session.send("show me the first 3 rows of data/sample.jsonl", thread_id=asked.thread_id)
    assert rows.pending is not None and "351 rows" in rows.replies[0]
    helped = session.send("help", thread_id=asked.thread_id)
    assert helped.pending is not None and "What I can do" in helped.replies[0]
    with pytest.raises(AegisError, match="waiting for an approval"):
        session.send("go ahead and approve it", thread_id=asked.thread_id)
    job = session.job(asked.thread_id)
    assert job is not None and not job.attempts and job.approval is None
    assert session.pending(asked.thread_id).request_id == pending.request_id
    assert spend_store().money(asked.thread_id).committed_usd == 0
    done = session.resume(asked.thread_id, ApprovalAnswer(decision="cancel", decided_by="person:test"))
    assert done.job is not None and done.job.status == "cancelled" and not done.job.attempts


@pytest.mark.slow
def test_a_trained_run_is_listed_tried_and_reported_without_touching_it(priced: None) -> None:
    chat = AgentSession("offline", policy=BudgetPolicy(soft_threshold_usd=1.0, max_budget_usd=5.0))
    try:
        trained = chat.send(JOB)
        job = trained.job
        assert job is not None and job.attempts[-1].status == "succeeded"
        report = job.folder.report_path
        written = report.stat().st_mtime_ns
        spent = spend_store().money(trained.thread_id).committed_usd
        listed = chat.send("what runs do I have?", thread_id=trained.thread_id)
        assert job.run_id in listed.replies[0] and "| yes |" in listed.replies[0]
        tried = chat.send("try the last run with: What is the capital of France?", thread_id=trained.thread_id)
        assert f"**Run `{job.run_id}`**" in tried.replies[0] and "\n> " in tried.replies[0]
        shown = chat.send("show the last report", thread_id=trained.thread_id)
        assert "## Executive Summary" in shown.replies[0] and str(report) in shown.replies[0]
        assert "## Event Timeline" not in shown.replies[0]
        after = chat.job(trained.thread_id)
    finally:
        chat.close()
    assert after is not None and after.model_dump() == job.model_dump() and report.stat().st_mtime_ns == written
    assert spend_store().money(trained.thread_id).committed_usd == spent
    assert len(run_folders()) == 1


def stub_session(monkeypatch: pytest.MonkeyPatch, llm: ScriptedOpenAI, *texts: str) -> tuple[list[TurnResult], list]:
    """Turns of one thread with ChatOpenAI on the OpenAI-compatible stand-in; the results and the requests it got."""
    with http_server(llm) as (url, seen):
        monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000")
        chat = AgentSession("openai:stub-model", policy=FREE)
        try:
            results = [chat.send(texts[0])]
            results += [chat.send(text, thread_id=results[0].thread_id) for text in texts[1:]]
        finally:
            chat.close()
    return results, seen


def test_a_chat_model_is_offered_the_read_only_tools_and_may_call_them(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_runs("20261207-100000-aaaaaa")
    llm = ScriptedOpenAI({"read_only": "list_runs"}, ["list_runs", "list_runs"], final="You have one run.")
    (result,), seen = stub_session(monkeypatch, llm, "which runs are on this box?")
    assert answered(result) == "You have one run."
    calls = [json.loads(body) for _m, path, _h, body in seen if path.endswith("/chat/completions")]
    loop = [c for c in calls if "tools" in c and "estimate_cost" in {t["function"]["name"] for t in c["tools"]}]
    offered = {t["function"]["name"]: t["function"]["parameters"]["properties"] for t in loop[0]["tools"]}
    assert {"list_runs", "compare_runs", "preview_data", "try_run", "show_report"} <= set(offered)
    assert "path" in offered["preview_data"] and "prompt" in offered["try_run"]
    answers = [m for m in loop[-1]["messages"] if m["role"] == "tool"]
    assert len(answers) == 2 and all("20261207-100000-aaaaaa" in m["content"] for m in answers)
    assert run_folders() == [Path(os.environ["AEGIS_RUNS_DIR"]) / "20261207-100000-aaaaaa"]


def test_help_names_the_chat_model_that_reads_the_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    (result,), _seen = stub_session(monkeypatch, ScriptedOpenAI({"read_only": "help"}, [], final="-"), "hi, what now?")
    assert "planning with the chat model stub-model" in answered(result)


def test_a_chat_model_cannot_price_approve_or_run_in_a_read_only_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    offline = AgentSession("offline", policy=FREE)
    try:
        priced = offline.send(f"just the estimate: {JOB}")
    finally:
        offline.close()
    job = priced.job
    assert job is not None and job.status == "planning"
    before = job.folder.events()
    plan = ["list_runs", "estimate_cost", "request_approval", "run_local"]
    llm = ScriptedOpenAI({"read_only": "list_runs"}, plan, final="Done.")
    with http_server(llm) as (url, seen):
        monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000")
        chat = AgentSession("openai:stub-model", policy=FREE)
        try:
            result = chat.send("what runs do I have?", thread_id=priced.thread_id)
        finally:
            chat.close()
    assert result.pending is None and result.job is not None and result.job.model_dump() == job.model_dump()
    assert job.folder.events() == before  # not even the calls were recorded: the job was never read
    last = json.loads([body for _m, path, _h, body in seen if path.endswith("/chat/completions")][-1])
    turn = last["messages"][max(i for i, m in enumerate(last["messages"]) if m["role"] == "user") :]
    answers = [json.loads(m["content"]) for m in turn if m["role"] == "tool"]
    assert answers[0]["tool"] == "list_runs" and answers[0]["ok"]
    refused = answers[1:]  # the stand-in's plan goes on past the earlier turn's own tool call
    assert {a["tool"] for a in refused} == {"request_approval", "run_local"}
    assert all(not a["ok"] and "read-only request" in a["message"] for a in refused)
    assert spend_store().money(priced.thread_id).committed_usd == 0
