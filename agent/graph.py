"""The LangGraph agent: intake (structured output) → ReAct loop over the guarded tools → report.

Nothing here decides money or retries; the tools do. The graph only routes.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Checkpointer

from agent.intake import SpecRequest, build_spec, merge_request
from agent.offline_model import SPEC_PARSED
from agent.state import AgentState
from tools.errors import AegisError
from tools.guarded_tools import TOOLS
from tools.job import JobState, new_job, report_job, set_spec
from tools.paths import PROMPTS_DIR, resolve_dataset_path
from tools.spec import BudgetPolicy

TERMINAL = {"succeeded", "failed", "interrupted", "cancelled", "refused"}


def system_prompt(executor: str) -> str:
    text = (PROMPTS_DIR / "system.md").read_text(encoding="utf-8")
    return text.replace("{run_tool}", "run_on_modal" if executor == "modal" else "run_local")


def build_graph(model: BaseChatModel, *, checkpointer: Checkpointer = None, executor: str = "local") -> Any:
    extraction = (PROMPTS_DIR / "extraction.md").read_text(encoding="utf-8")
    structured = model.with_structured_output(SpecRequest)
    with_tools = model.bind_tools(TOOLS)
    prompt = system_prompt(executor)

    def intake(state: AgentState) -> dict[str, Any]:
        human = next((m for m in reversed(state["messages"]) if isinstance(m, HumanMessage)), None)
        if human is None:
            return {}
        request = structured.invoke([SystemMessage(extraction), HumanMessage(str(human.content))])
        if not isinstance(request, SpecRequest):
            request = SpecRequest.model_validate(request)
        said = request.model_dump(exclude_none=True)
        job_raw = state.get("job")
        if not said and job_raw:
            return {}
        draft = merge_request(state.get("spec_draft") or {}, request)
        spec, problem = build_spec(draft)
        if spec is None:
            return {"spec_draft": draft, "messages": [AIMessage(problem or "Please describe the job.")]}
        try:
            resolve_dataset_path(spec.dataset_path)
            if spec.eval_dataset_path:
                resolve_dataset_path(spec.eval_dataset_path)
        except AegisError as exc:
            return {"spec_draft": draft, "messages": [AIMessage(f"I can't use that data: {exc}.")]}
        job = set_spec(_job_for(state, draft), spec, source="request")
        shown = spec.model_dump(mode="json", exclude_defaults=False)
        note = ""
        if draft.get("max_budget_usd") is not None:
            note = f"\nBudget for this run: hard limit ${job.policy.max_budget_usd:.2f} (a request can only lower it)."
        message = AIMessage(
            f"I read your request as this training spec (run {job.run_id}):\n```json\n{json.dumps(shown, indent=2)}\n```{note}",
            additional_kwargs={SPEC_PARSED: True},
        )
        return {"spec_draft": draft, "job": job.model_dump(mode="json"), "messages": [message]}

    def route_intake(state: AgentState) -> Literal["agent", "__end__"]:
        last = state["messages"][-1]
        if isinstance(last, AIMessage) and not last.additional_kwargs.get(SPEC_PARSED):
            return END
        return "agent" if state.get("job") else END

    def agent(state: AgentState) -> dict[str, Any]:
        response = with_tools.invoke([SystemMessage(prompt), *state["messages"]])
        return {"messages": [response]}

    def route_agent(state: AgentState) -> Literal["tools", "finalize"]:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else "finalize"

    def finalize(state: AgentState) -> dict[str, Any]:
        raw = state.get("job")
        if not raw:
            return {}
        job = JobState.model_validate(raw)
        if job.spec is None or (not job.attempts and job.status not in TERMINAL):
            return {}
        job = report_job(job)
        return {"job": job.model_dump(mode="json")}

    graph = StateGraph(AgentState)
    graph.add_node("intake", intake)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(TOOLS, handle_tool_errors=True))
    graph.add_node("finalize", finalize)
    graph.add_edge(START, "intake")
    graph.add_conditional_edges("intake", route_intake)
    graph.add_conditional_edges("agent", route_agent)
    graph.add_edge("tools", "agent")
    graph.add_edge("finalize", END)
    return graph.compile(checkpointer=checkpointer, name="aegis-agent")


def _job_for(state: AgentState, draft: dict[str, Any]) -> JobState:
    """Reuse the thread's job while nothing has run; otherwise open a new run in the same thread."""
    policy = BudgetPolicy.model_validate(state.get("policy") or {}).tightened(draft.get("max_budget_usd"))
    raw = state.get("job")
    if raw:
        job = JobState.model_validate(raw)
        if not job.attempts and job.status not in TERMINAL:
            return job.model_copy(update={"policy": policy})
    thread = state.get("thread_id") or None
    run_id = thread if thread and not raw else None
    return new_job(
        policy,
        max_retries=state.get("max_retries", 3),
        executor=state.get("executor", "local"),  # type: ignore[arg-type]
        run_id=run_id,
        local_memory_limit_mb=state.get("local_memory_limit_mb"),
    )
