"""Issue 26: a chat model that stops before the job is done, or does not answer at all, cannot stall the agent.

A local OpenAI-compatible stand-in on 127.0.0.1 answers every turn in prose (as a small model does), or sleeps
past the timeout. The model is reminded of the next step a bounded number of times, then the built-in plan
finishes the standard steps and says so; a call that times out is not sent again; Ctrl-C during a model call
ends the command at once; and the eval harness files a gate never reached as quality, not safety.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda

from agent.cli import main
from agent.evals.scenarios import Scenario, Transcript
from agent.evals.scoring import score_scenario
from agent.extraction import FALLBACK, MAX_TRIES, next_message
from agent.models import ModelTimeout
from agent.session import AgentSession
from tests.http_stubs import completion, http_server
from tests.processes import ROOT, aegis_env, wait_for
from tools.core.spec import BudgetPolicy

REQUEST = "LoRA fine-tune local:tiny-llama on data/sample.jsonl with batch size 4, seq_len 128, for 3 steps on cpu"
PROSE = "Great question! Fine-tuning is a wonderful way to adapt a model. Let me know if you need anything else."
GARBAGE = "Sure: method lora, the tiny llama, sample data. Happy training!"
TOOLS = {"estimate_cost", "request_approval", "run_local", "run_evals"}


class ProseModel:
    """An endpoint that never makes a tool call: garbage for structured output, prose for every agent turn."""

    def __init__(self) -> None:
        self.intake_calls: list[dict[str, Any]] = []
        self.loop_calls: list[dict[str, Any]] = []

    def __call__(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        request = json.loads(body)
        if "response_format" in request or "SpecRequest" in {t["function"]["name"] for t in request.get("tools", [])}:
            self.intake_calls.append(request)
            return 200, completion(GARBAGE)
        self.loop_calls.append(request)
        return 200, completion(PROSE)


class SleepyModel:
    """An endpoint that answers only when released (or after a minute): longer than any timeout the tests set."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()

    def __call__(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        self.calls += 1
        self.release.wait(60)
        return 200, completion(PROSE)


@pytest.fixture
def priced_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """This CPU costs money and a person answers every spend: the job stops at the gate, nothing trains."""
    monkeypatch.setenv("AEGIS_LOCAL_PRICE_USD_PER_HOUR", "36")
    monkeypatch.setenv("AEGIS_SOFT_THRESHOLD_USD", "0")


def point_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000")


def test_a_model_that_answers_in_prose_is_reminded_then_the_built_in_plan_reaches_the_gate(
    priced_cpu: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    llm = ProseModel()
    with http_server(llm) as (url, _seen):
        point_at(monkeypatch, url)
        code = main(["run", "--model", "openai:stalling-model", REQUEST])
    out, err = capsys.readouterr()
    assert code == 3, out + err  # paused at the gate, waiting for a person
    assert "Approval needed" in out and "→ estimate_cost" in out and "→ request_approval" in out
    assert len(llm.intake_calls) == MAX_TRIES and "built-in rules" in out  # the intake fell back to the rules
    assert len(llm.loop_calls) == MAX_TRIES  # the first answer and two reminders, then no more model calls
    for call in llm.loop_calls[1:]:
        reminder = call["messages"][-1]["content"]
        assert "The job is not done" in reminder and "estimate_cost" in reminder
        assert call["messages"][-2]["content"] == PROSE
    assert "The model stopped answering with tool calls" in out
    assert "Aegis finishes the standard steps itself" in out
    assert "Traceback" not in out + err


def test_a_model_reminded_once_carries_on_with_its_own_tool_calls(priced_cpu: None, monkeypatch) -> None:
    answers = [completion(PROSE), completion(tool_calls=[{"name": "estimate_cost"}])]
    answers.append(completion(tool_calls=[{"name": "request_approval"}]))
    loop: list[dict[str, Any]] = []

    def respond(method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        request = json.loads(body)
        if "response_format" in request:
            return 200, completion(GARBAGE)
        loop.append(request)
        return 200, answers[min(len(loop), len(answers)) - 1]

    with http_server(respond) as (url, _seen):
        point_at(monkeypatch, url)
        session = AgentSession("openai:stalls-once", policy=BudgetPolicy(soft_threshold_usd=0.0))
        try:
            result = session.send(REQUEST)
        finally:
            session.close()
    assert result.pending is not None and len(loop) == 3
    assert "estimate_cost" in loop[1]["messages"][-1]["content"]
    assert not any("stopped answering" in r for r in result.replies)  # the model's own calls were used


def plan_of(*names: str) -> RunnableLambda:
    """The standard plan as a runnable: its next message calls the first of ``names``, or is words."""
    calls = [{"name": n, "args": {}, "id": f"call_{n}", "type": "tool_call"} for n in names[:1]]
    return RunnableLambda(lambda _messages: AIMessage("" if calls else "All done.", tool_calls=calls))


def test_words_are_the_answer_once_the_plan_has_nothing_left_to_do() -> None:
    calls: list[Any] = []
    model = RunnableLambda(lambda messages: calls.append(messages) or AIMessage("Here is your summary."))
    message = next_message(model, plan_of(), "prompt", [HumanMessage("thanks!")], TOOLS)
    assert message.content == "Here is your summary." and len(calls) == 1  # not reminded
    assert not message.additional_kwargs.get(FALLBACK)


def test_a_timed_out_call_is_not_sent_again_and_the_plan_takes_over_saying_so() -> None:
    calls: list[Any] = []

    def slow(messages: Any) -> AIMessage:
        calls.append(messages)
        raise ModelTimeout("the model gave no answer within 1 s (AEGIS_MODEL_TIMEOUT_S)")

    message = next_message(RunnableLambda(slow), plan_of("estimate_cost"), "prompt", [HumanMessage("go")], TOOLS)
    assert len(calls) == 1 and message.tool_calls[0]["name"] == "estimate_cost"
    assert message.additional_kwargs.get(FALLBACK)
    assert str(message.content).startswith("The model gave no answer within 1 s")


def test_a_model_that_sleeps_past_the_timeout_gets_a_timeout_answer_in_time(monkeypatch) -> None:
    monkeypatch.setenv("AEGIS_MODEL_TIMEOUT_S", "1")
    llm = SleepyModel()
    with http_server(llm) as (url, _seen):
        point_at(monkeypatch, url)
        session = AgentSession("openai:sleepy-model", policy=BudgetPolicy())
        started = time.monotonic()
        try:
            result = session.send("hello, can you help me?")
        finally:
            session.close()
            llm.release.set()
    took = time.monotonic() - started
    assert llm.calls == 1  # the intake's first call timed out: its retries were not sent
    assert took < 15, took  # the endpoint would have answered after 60 s
    assert any("no answer within 1 s" in r and "AEGIS_MODEL_TIMEOUT_S" in r for r in result.replies)
    assert result.job is None and result.pending is None


def test_timeouts_in_the_intake_and_the_loop_still_reach_the_gate(priced_cpu: None, monkeypatch) -> None:
    monkeypatch.setenv("AEGIS_MODEL_TIMEOUT_S", "1")
    llm = SleepyModel()
    with http_server(llm) as (url, _seen):
        point_at(monkeypatch, url)
        session = AgentSession("openai:sleepy-model", policy=BudgetPolicy(soft_threshold_usd=0.0))
        started = time.monotonic()
        try:
            result = session.send(REQUEST)
        finally:
            session.close()
            llm.release.set()
    assert llm.calls == 2, llm.calls  # one intake call and one agent-loop call, each cut at the timeout
    assert time.monotonic() - started < 60  # a single unbounded call would have taken 60 s
    assert result.pending is not None
    assert any(r.startswith("The model gave no answer within 1 s") for r in result.replies)


def test_ctrl_c_during_a_model_call_ends_at_once_in_one_line(tmp_path, monkeypatch) -> None:
    llm = SleepyModel()
    with http_server(llm) as (url, _seen):
        env = aegis_env(tmp_path, OPENAI_BASE_URL=f"{url}/v1", OPENAI_API_KEY="sk-test-not-a-real-key-000000")
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--model", "openai:sleepy-model", REQUEST],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: llm.calls, 120, "the first model call")
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
            out, err = proc.communicate(timeout=30)
            took = time.monotonic() - sent
        finally:
            proc.kill()
            llm.release.set()
    assert proc.returncode == 130, out + err
    assert took < 10, took  # not when the endpoint answers (60 s)
    assert "Traceback" not in out + err and "cannot schedule new futures" not in err
    assert err.strip().splitlines()[-1] == "interrupted during a call of the chat model; nothing more was started"


def test_a_gate_never_reached_is_a_quality_failure_not_a_safety_failure() -> None:
    scenario = Scenario.model_validate(
        {"name": "s", "description": "d", "turns": ["x"], "expect": {"gate": "approved", "status": "succeeded"}}
    )
    checks = {c.name: c for c in score_scenario(scenario, Transcript(thread_id="t"))}
    assert not checks["gate"].passed and checks["gate"].kind == "quality"
    assert all(c.passed for c in checks.values() if c.kind == "safety")
