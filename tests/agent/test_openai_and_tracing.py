"""The OpenAI-compatible path and LangSmith tracing, over real HTTP to local stand-ins."""

from __future__ import annotations

import json

from agent.session import AgentSession
from tests.http_stubs import ScriptedOpenAI, http_server
from tools.core.spec import BudgetPolicy

SPEC = {
    "method": "lora",
    "model_name": "local:tiny-llama",
    "dataset_path": "data/sample.jsonl",
    "num_epochs": 1,
    "micro_batch_size": 4,
    "seq_len": 128,
    "max_steps": 3,
}
PLAN = ["estimate_cost", "request_approval", "run_local", "run_evals"]


def send_once(model: str, text: str):
    session = AgentSession(model, policy=BudgetPolicy())
    try:
        return session.send(text)
    finally:
        session.close()


def send_to_stub_openai(monkeypatch, llm: ScriptedOpenAI, text: str):
    """One turn of the agent with ChatOpenAI pointed at a local OpenAI-compatible server; returns the requests too."""
    with http_server(llm) as (url, seen):
        monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000")
        return send_once("openai:stub-model", text), seen


def test_chat_openai_drives_the_agent_to_a_finished_run(monkeypatch):
    llm = ScriptedOpenAI(SPEC, PLAN, final="Done: the run finished and the report is written.")
    result, seen = send_to_stub_openai(monkeypatch, llm, "LoRA fine-tune the tiny llama on the sample data, 3 steps")
    job = result.job
    assert job.attempts[-1].status == "succeeded" and job.attempts[-1].steps_completed == 3
    assert [e.data["tool"] for e in job.folder.events() if e.phase == "tool"] == PLAN
    assert result.replies[-1].startswith("Done")
    chat_calls = [json.loads(body) for method, path, _, body in seen if path.endswith("/chat/completions")]
    assert chat_calls[0]["model"] == "stub-model"
    offered = {t["function"]["name"] for t in chat_calls[-1]["tools"]}
    agent_calls = [c for c in chat_calls if "estimate_cost" in {t["function"]["name"] for t in c.get("tools", [])}]
    assert agent_calls and all(c["parallel_tool_calls"] is False for c in agent_calls)  # one call at a time
    assert offered == {
        "estimate_cost",
        "request_approval",
        "render_script",
        "run_local",
        "run_on_modal",
        "run_evals",
        "remediate",
        "list_runs",  # the read-only tools, beside the guarded ones (tests/agent/test_read_only_chat.py)
        "compare_runs",
        "preview_data",
        "try_run",
        "show_report",
    }


def test_an_endpoint_that_skips_approval_still_cannot_train(monkeypatch):
    llm = ScriptedOpenAI(SPEC, ["run_local", "run_local"], final="I trained it.")
    result, _ = send_to_stub_openai(monkeypatch, llm, "train it now")
    assert not result.job.attempts
    assert sum(bool(e.data.get("refused")) for e in result.job.folder.events()) == 2


def test_tracing_sends_the_run_tree_with_metadata_and_no_secret(monkeypatch):
    posted: list[bytes] = []

    def langsmith(method: str, path: str, body: bytes):
        if path.startswith("/info"):
            return 404, {"detail": "no info here: the client falls back to its defaults"}
        if body:
            posted.append(body)
        return 200, {}

    api_key = "lsv2_pt_0123456789abcdef0123456789abcdef_0123456789"
    with http_server(langsmith) as (url, _):
        monkeypatch.setenv("LANGSMITH_ENDPOINT", url)
        monkeypatch.setenv("LANGSMITH_API_KEY", api_key)
        monkeypatch.setenv("LANGSMITH_TRACING", "true")
        monkeypatch.setenv("LANGSMITH_DISABLE_RUN_COMPRESSION", "true")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-live-should-never-appear-0000000000")
        result = send_once(
            "offline",
            "LoRA fine-tune local:tiny-llama on data/sample.jsonl, seq_len 128, for 2 steps with batch size 4",
        )
    blob = b"\n".join(posted).decode("utf-8", errors="replace")
    assert result.job.attempts[-1].status == "succeeded"
    assert "aegis-turn" in blob
    for tool in ("estimate_cost", "request_approval", "run_local", "run_evals"):
        assert f'"{tool}"' in blob, tool
    assert result.job.spec.spec_hash() in blob
    for key in ("spec_hash", "estimate_usd", "gate_decision", "outcome", "thread_id"):
        assert f'"{key}"' in blob, key
    assert api_key not in blob and "sk-live-should-never-appear" not in blob
