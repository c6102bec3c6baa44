"""Typed tool results: every tool's result survives its ToolMessage, and the offline planner, the CLI and
Chainlit read it back as a model (``read_tool_result``), never by dict key."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest
from chainlit.context import init_ws_context
from chainlit.session import WebsocketSession
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode
from rich.console import Console

from agent.cli import output
from agent.offline_model import SPEC_PARSED, OfflinePlanner
from agent.results import (
    RESULT_TYPES,
    TOOL_RESULT,
    ApprovalResult,
    AttemptFacts,
    EstimateFacts,
    EstimateResult,
    EvalFacts,
    EvalsResult,
    PreflightFacts,
    RemediateResult,
    RemediationFacts,
    RenderResult,
    ResultStatus,
    RunResult,
    ToolName,
    ToolResult,
    failure,
    read_tool_result,
)
from agent.state import AgentState
from agent.tools import TOOLS
from agent.ui.views import ChatView
from tools.core.spec import EvalCheck, TrainingSpec
from tools.core.status import AttemptStatus, FailureClass
from tools.plan.preflight import PreflightCheck

SPEC = TrainingSpec(model_name="local:tiny-llama", dataset_path="data/sample.jsonl", target_gpu="a10g")
ESTIMATE = EstimateFacts(
    estimated_cost_usd=0.0092,
    estimated_duration_min=0.5,
    estimated_vram_gb=0.82,
    gpu="a10g",
    num_gpus=1,
    fits=True,
    gpu_memory_gb=24.0,
    total_steps=4,
    dataset_rows=40,
    dataset_tokens=5120,
    trainable_params=12_288,
    total_params=4_000_000,
    soft_threshold_usd=0.0001,
    max_budget_usd=5.0,
    spent_usd=0.0,
    notes=["tokens counted with the model's tokenizer"],
    preflight=PreflightFacts(
        passed=True, checks=[PreflightCheck(name="dataset_parses", status="pass", detail="40 rows")], truncated_share=0
    ),
    spec=SPEC,
    quote_hash="0123456789abcdef",
)
ATTEMPT = AttemptFacts(
    attempt=1,
    status="succeeded",
    retry_count=0,
    max_retries=3,
    initial_train_loss=3.2,
    final_train_loss=1.1,
    steps=4,
    duration_s=12.0,
    tokens_per_s=800.0,
    peak_memory_mb=512.0,
    actual_cost_usd=0.0,
    spent_usd=0.0,
)
COMMON = {"run_id": "r1", "report_path": "runs/r1/REPORT.md"}
RESULTS: list[ToolResult] = [
    EstimateResult(ok=True, status="estimated", estimate=ESTIMATE, **COMMON),
    EstimateResult(ok=False, status="preflight_failed", message="pre-flight failed", estimate=ESTIMATE, **COMMON),
    ApprovalResult(ok=True, status="approved", decided_by="policy:auto", message="within the soft limit", **COMMON),
    ApprovalResult(ok=True, status="optimized", decided_by="person:test", estimate=ESTIMATE, **COMMON),
    ApprovalResult(ok=False, status="cancelled", decided_by="person:test", message="cancel by person:test", **COMMON),
    RenderResult(ok=True, status="rendered", script_path="a/train.py", config_path="a/config.json", **COMMON),
    RunResult(tool="run_local", ok=True, status="succeeded", attempt=ATTEMPT, **COMMON),
    RunResult(
        tool="run_on_modal",
        ok=False,
        status="failed",
        attempt=ATTEMPT.model_copy(
            update={"status": AttemptStatus.FAILED, "failure_class": FailureClass.OOM, "error": "CUDA out of memory"}
        ),
        **COMMON,
    ),
    EvalsResult(
        ok=False,
        status="failed",
        evals=EvalFacts(checks=[EvalCheck(name="loss_improved", passed=False, value=0.01)], metrics={"ppl": None}),
        **COMMON,
    ),
    RemediateResult(
        ok=True,
        status="remediated",
        remediation=RemediationFacts(
            retry_count=1, max_retries=3, rule="oom", changes={"micro_batch_size": [4, 2]}, explanation="halved"
        ),
        estimate=ESTIMATE,
        **COMMON,
    ),
]


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: f"{r.tool}-{r.status}")
def test_every_result_round_trips_through_its_tool_message(result: ToolResult) -> None:
    message = ToolMessage(result.model_dump_json(), tool_call_id="c1", name=result.tool)
    back = read_tool_result(message.content, message.name)
    assert type(back) is type(result) and back == result
    assert TOOL_RESULT.validate_json(result.model_dump_json()) == result


@pytest.mark.parametrize("tool", list(ToolName))
def test_every_tool_can_be_refused_with_its_own_result_type(tool: ToolName) -> None:
    refused = failure(tool, ResultStatus.REFUSED, "no approval for the current spec")
    back = TOOL_RESULT.validate_json(refused.model_dump_json())
    assert type(back) is RESULT_TYPES[tool] and back.tool == tool and not back.ok
    assert (back.status, back.message) == ("refused", "no approval for the current spec")


def test_a_reply_that_is_no_result_reads_as_an_error_never_as_a_guess() -> None:
    words = read_tool_result("Error: run_locall is not a valid tool, try one of [run_local].", "run_locall")
    assert type(words) is ToolResult and (words.tool, words.ok, words.status) == ("run_locall", False, "error")
    # a dict that looks like an old reply (no tool, facts at the top) is not read by its keys
    old = json.dumps({"ok": True, "status": "estimated", "estimated_cost_usd": 0.01, "gpu": "a10g"})
    assert read_tool_result(old, "estimate_cost").status == ResultStatus.ERROR


def test_the_model_sees_only_its_own_arguments() -> None:
    shown = {t.name: set(t.tool_call_schema.model_fields) for t in TOOLS}
    estimate_args = {"target_gpu", "probe_steps"}  # a probe attempt is gated like any run: no money in an argument
    assert shown == {name.value: (estimate_args if name == ToolName.ESTIMATE_COST else set()) for name in ToolName}
    assert all(t.description and "runtime" not in t.tool_call_schema.model_json_schema()["properties"] for t in TOOLS)


def test_a_guarded_tool_answers_with_its_typed_result_even_without_a_job() -> None:
    graph = StateGraph(AgentState)
    graph.add_node("tools", ToolNode(TOOLS))
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    call = {"name": "run_local", "args": {"approval": {"decided_by": "person:alice"}}, "id": "c1", "type": "tool_call"}
    state = graph.compile().invoke({"messages": [AIMessage("", tool_calls=[call])]})
    reply = state["messages"][-1]
    result = read_tool_result(reply.content, reply.name)
    assert isinstance(result, RunResult) and result.tool == ToolName.RUN_LOCAL
    assert (result.ok, result.status) == (False, "refused") and "no training job yet" in result.message


# ---- the offline planner ---------------------------------------------------------------------------------------


def _turn(*results: ToolResult) -> list[Any]:
    messages: list[Any] = [HumanMessage("fine-tune"), AIMessage("spec", additional_kwargs={SPEC_PARSED: True})]
    for i, result in enumerate(results):
        messages.append(
            AIMessage("", tool_calls=[{"name": result.tool, "args": {}, "id": f"c{i}", "type": "tool_call"}])
        )
        messages.append(ToolMessage(result.model_dump_json(), tool_call_id=f"c{i}", name=result.tool))
    return messages


def _next_call(*results: ToolResult) -> str | None:
    planner = OfflinePlanner().bind_tools(TOOLS)
    message = planner.invoke(_turn(*results))
    return message.tool_calls[0]["name"] if message.tool_calls else None


def test_the_planner_follows_the_plan_from_the_typed_results() -> None:
    estimated, approved, trained, failed_oom = RESULTS[0], RESULTS[2], RESULTS[6], RESULTS[7]
    assert _next_call() == "estimate_cost"
    assert _next_call(estimated) == "request_approval"
    assert _next_call(estimated, approved) == "run_local"
    assert _next_call(estimated, approved, trained) == "run_evals"
    assert _next_call(estimated, approved, failed_oom) == "remediate"
    assert _next_call(estimated, approved, failed_oom, RESULTS[9]) == "request_approval"
    assert _next_call(RESULTS[1]) is None  # a failed pre-flight stops before anyone is asked for money


def test_the_planner_summary_uses_the_typed_numbers_and_the_one_money_format() -> None:
    planner = OfflinePlanner().bind_tools(TOOLS)
    summary = str(planner.invoke(_turn(RESULTS[0], RESULTS[2], RESULTS[6], RESULTS[8])).content)
    assert "Estimate: $0.0092 on a10g (0.5 min, 0.8 GB, fits); limits: soft $0.0001, hard $5.00." in summary
    assert "Gate: approved by policy:auto — within the soft limit" in summary
    assert "Training attempt 1 succeeded: train loss 3.200 → 1.100, 4 steps in 12 s" in summary
    assert "actual cost $0.00" in summary and "Evaluation failed: loss_improved FAIL." in summary
    assert summary.endswith("Report: runs/r1/REPORT.md")


# ---- the CLI -----------------------------------------------------------------------------------------------------


def test_the_cli_prints_each_typed_result(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(output, "console", Console(file=out, width=200, color_system=None))
    events = output.ConsoleEvents()
    for i, result in enumerate([RESULTS[0], RESULTS[6], RESULTS[8], failure(ToolName.RUN_LOCAL, "refused", "no")]):
        events({"kind": "tool_call", "name": result.tool, "args": {}, "id": f"c{i}"})
        events({"kind": "tool_result", "id": f"c{i}", "name": result.tool, "text": result.model_dump_json()})
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["→ estimate_cost", "  estimated $0.0092 on a10g (0.5 min, 0.82 GB)"]
    assert lines[3] == "  succeeded attempt 1: 4 steps in 12 s, cost $0.00"
    assert lines[5] == "  failed 0/1 checks passed" and lines[7] == "  refused no"


# ---- Chainlit ----------------------------------------------------------------------------------------------------


def test_chainlit_draws_the_typed_result_in_the_tool_step() -> None:
    shown: list[dict[str, Any]] = []

    async def emit(event: str, data: Any) -> None:
        if isinstance(data, dict) and data.get("output"):
            shown.append(data)

    async def emit_call(*_: Any) -> None:
        return None

    async def draw() -> None:
        session = WebsocketSession("tab", "sock-tab", emit, emit_call, {}, "webapp")
        try:
            init_ws_context(session)
            view = ChatView()
            await view.show_event({"kind": "tool_call", "name": "estimate_cost", "args": {}, "id": "c1"})
            await view.show_event({"kind": "tool_result", "id": "c1", "text": RESULTS[0].model_dump_json()})
            refused = failure(ToolName.RUN_LOCAL, ResultStatus.REFUSED, "no approval")
            await view.show_event(
                {"kind": "tool_result", "id": "c2", "name": "run_local", "text": refused.model_dump_json()}
            )
        finally:
            await session.delete()

    asyncio.run(draw())
    estimate, refusal = shown[-2], shown[-1]
    assert estimate["name"] == "estimate_cost" and "| Cost | **$0.0092** |" in estimate["output"]
    assert not estimate["isError"]
    assert refusal["name"] == "run_local" and refusal["output"] == "**refused**: no approval" and refusal["isError"]
