"""Issue 17: a small model behind an OpenAI-compatible endpoint cannot crash the intake or the agent loop.

A local stand-in on 127.0.0.1 answers the intake with prose, then with invalid JSON, then (in the loop)
with malformed tool calls, as a small Ollama or llama.cpp model does. The person gets a spec (through a
retry or the offline fallback, said so) or a question, never a traceback.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.cli import main
from agent.session import AgentSession
from tests.http_stubs import completion, http_server
from tools.core.spec import BudgetPolicy

pytestmark = pytest.mark.usefixtures("gpu_cloud")  # GPU targets run on a stand-in for Modal's cloud

ASK = BudgetPolicy(max_budget_usd=5.0, soft_threshold_usd=0.0, allow_auto_approve=True)
REQUEST = "LoRA fine-tune local:tiny-llama on data/sample.jsonl, batch size 2, seq_len 128, 3 steps on an a10g"
GOOD = {
    "method": "lora",
    "model_name": "local:tiny-llama",
    "dataset_path": "data/sample.jsonl",
    "micro_batch_size": 2,
    "seq_len": 128,
    "max_steps": 3,
    "target_gpu": "a10g",
}
PROSE = "Sure! I would be happy to help you fine-tune TinyLlama. Let's get started on an A10G."
INVALID = '{"method": "lora", "model_name": "local:tiny-llama", "micro_batch_size": "two",'


def broken_call(name: str, arguments: str) -> dict[str, Any]:
    """A completion whose tool call's arguments are not JSON (what small models write)."""
    body = completion(tool_calls=[{"name": name}])
    body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = arguments
    return body


class SmallModel:
    """Intake answers in the order given (the last repeats); agent-loop answers likewise."""

    def __init__(self, intake: list[dict[str, Any]], loop: list[dict[str, Any]]):
        self.intake, self.loop = intake, loop
        self.intake_calls: list[dict[str, Any]] = []
        self.loop_calls: list[dict[str, Any]] = []

    def __call__(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any] | None]:
        request = json.loads(body)
        tools = {t["function"]["name"] for t in request.get("tools", [])}
        if "response_format" in request or "SpecRequest" in tools:
            self.intake_calls.append(request)
            return 200, self.intake[min(len(self.intake_calls), len(self.intake)) - 1]
        self.loop_calls.append(request)
        return 200, self.loop[min(len(self.loop_calls), len(self.loop)) - 1]


def send(monkeypatch, llm: SmallModel, text: str = REQUEST):
    with http_server(llm) as (url, _seen):
        monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000")
        session = AgentSession("openai:smollm2-135m-instruct", policy=ASK)
        try:
            return session.send(text)
        finally:
            session.close()


def test_prose_then_invalid_json_then_a_valid_answer_is_retried_with_the_problem_shown(monkeypatch):
    llm = SmallModel(
        [completion(PROSE), completion(INVALID), completion(json.dumps(GOOD))], [completion("Here is what I found.")]
    )
    result = send(monkeypatch, llm)
    assert len(llm.intake_calls) == 3
    retry = llm.intake_calls[1]["messages"]
    assert retry[-2]["content"] == PROSE and "could not be used" in retry[-1]["content"]
    assert "could not be used" in llm.intake_calls[2]["messages"][-1]["content"]
    assert result.job is not None and result.job.spec.micro_batch_size == 2 and result.job.spec.target_gpu == "a10g"
    assert not any("built-in rules" in r for r in result.replies)  # the model's own answer was used


def test_a_model_that_never_answers_in_json_falls_back_to_the_offline_parser_and_says_so(monkeypatch):
    llm = SmallModel([completion(PROSE), completion(INVALID)], [completion("Done.")])
    result = send(monkeypatch, llm)
    assert len(llm.intake_calls) == 3  # bounded
    assert result.job is not None and result.job.spec.seq_len == 128 and result.job.spec.max_steps == 3
    shown = next(r for r in result.replies if "training spec" in r)
    assert "could not be read as a request after 3 tries" in shown and "built-in rules" in shown


def test_the_fallback_still_asks_about_what_it_did_not_understand(monkeypatch):
    llm = SmallModel([completion(PROSE)], [completion("Done.")])
    result = send(monkeypatch, llm, "LoRA fine-tune local:tiny-llama on data/sample.jsonl on a tpu-v5e")
    assert result.job is None and result.pending is None
    assert "tpu-v5e" in result.replies[-1] and "a10g" in result.replies[-1]


def test_the_models_own_not_understood_list_is_asked_about(monkeypatch):
    answer = {**GOOD, "target_gpu": None, "not_understood": ["'on a Cerebras wafer': an accelerator"]}
    llm = SmallModel([completion(json.dumps(answer))], [completion("Done.")])
    result = send(monkeypatch, llm, "LoRA fine-tune local:tiny-llama on data/sample.jsonl on a Cerebras wafer")
    assert result.job is None and "Cerebras" in result.replies[-1]


def test_malformed_tool_calls_in_the_loop_hand_over_to_the_standard_plan(monkeypatch):
    bad = [
        broken_call("estimate_cost", "{target_gpu: a10g"),
        broken_call("estimate_cost", "not json at all"),
        completion('<tool_call>{"name": "estimate_cost"}</tool_call>'),
    ]
    llm = SmallModel([completion(json.dumps(GOOD))], bad)
    result = send(monkeypatch, llm)
    assert len(llm.loop_calls) == 3  # the first answer and two retries, each shown its problem
    assert "not valid JSON" in llm.loop_calls[1]["messages"][-1]["content"]
    assert any("could not call the tools properly after 3 tries" in r for r in result.replies)
    assert result.pending is not None  # the standard plan went on: estimated, and put up for approval
    assert result.job is not None and result.job.estimate is not None


def test_the_cli_never_shows_a_traceback_with_a_small_model(monkeypatch, capsys):
    llm = SmallModel([completion(PROSE)], [broken_call("nonexistent_tool", "{}")])
    with http_server(llm) as (url, _seen):
        monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000")
        monkeypatch.setenv("AEGIS_SOFT_THRESHOLD_USD", "0")  # ask a person: nothing trains here
        code = main(
            [
                "run",
                "--model",
                "openai:small",
                "LoRA fine-tune local:tiny-llama on data/sample.jsonl, seq_len 128, 2 steps on an a10g",
            ]
        )
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err and "ValidationError" not in out.out + out.err
    assert code == 3  # paused at the gate with a spec, as the standard plan does
    assert "built-in" in out.out + out.err
