"""The LangGraph agent: intake (structured output) → ReAct loop over the guarded tools → report.

Nothing here decides money or retries; the tools and the job steps do (``tools.job``). The graph only routes.
"""

from __future__ import annotations

import json
from inspect import signature
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolCall, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Checkpointer, Send

from agent.browse import help_text
from agent.extraction import extract_request, next_message
from agent.intake import (
    SpecRequest,
    build_spec,
    merge_request,
    not_understood_question,
    out_of_range,
    said,
    sentence,
    sources_text,
)
from agent.lineage import (
    CONTINUE_KEY,
    build_on,
    continue_or_build,
    continued_text,
    named_run,
    spec_changes,
    waiting_continue,
    without_parent,
)
from agent.offline_model import ESTIMATE_ONLY, SPEC_PARSED, OfflinePlanner
from agent.read_only_tools import READ_ONLY, is_read_only_turn, read_only_call
from agent.state import AgentState
from agent.tools import AGENT_TOOLS
from tools.core.errors import AegisError
from tools.core.money import usd
from tools.core.paths import PROMPTS_DIR, resolve_dataset_path
from tools.core.spec import BudgetPolicy
from tools.core.status import JobStatus
from tools.core.stop import stop_requested
from tools.job.planning import set_spec
from tools.job.reporting import report_job
from tools.job.state import TERMINAL, JobState, job_for_request
from tools.run.backend import AUTO

STOPPED = "Stopped on request: nothing more will be started. The report says what ran and what it cost."
NOTE = "aegis_note"  # a word to the person that does not end the turn


def system_prompt() -> str:
    return (PROMPTS_DIR / "system.md").read_text(encoding="utf-8")


def extraction_prompt() -> str:
    return (PROMPTS_DIR / "extraction.md").read_text(encoding="utf-8")


def build_graph(model: BaseChatModel, *, checkpointer: Checkpointer = None) -> Any:
    extraction = extraction_prompt()
    # One tool call at a time: asked of the model where it can be, and enforced by the graph (route_*) anyway.
    serial = {"parallel_tool_calls": False} if "parallel_tool_calls" in signature(model.bind_tools).parameters else {}
    with_tools = model.bind_tools(AGENT_TOOLS, **serial)
    fallback = OfflinePlanner().bind_tools(AGENT_TOOLS)  # the standard plan, when the model cannot
    tool_names = {t.name for t in AGENT_TOOLS}
    prompt = system_prompt()
    planner = planner_name(model)

    def intake(state: AgentState) -> dict[str, Any]:
        human = next((m for m in reversed(state["messages"]) if isinstance(m, HumanMessage)), None)
        if human is None:
            return {}
        if run := human.additional_kwargs.get(CONTINUE_KEY):  # a Continue button: no reading needed
            return read_request(state, SpecRequest(continue_run=str(run)))
        request, note = extract_request(model, extraction, str(human.content))
        if request.read_only:  # help, the runs, a preview, a try, a report: answered, nothing started
            return read_only_turn(request, note, planner)
        return read_request(state, request, note)

    def agent(state: AgentState) -> dict[str, Any]:
        if stop_requested(state.get("thread_id")):
            return {"messages": [AIMessage(STOPPED)]}
        return {"messages": [next_message(with_tools, fallback, prompt, state["messages"], tool_names)]}

    graph = StateGraph(AgentState)
    graph.add_node("intake", intake)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(AGENT_TOOLS, handle_tool_errors=True))
    graph.add_node("finalize", finalize)
    graph.add_edge(START, "intake")
    graph.add_conditional_edges("intake", route_intake, ["agent", "tools", END])
    graph.add_conditional_edges("agent", route_agent, ["tools", "finalize"])
    graph.add_conditional_edges("tools", route_tools, ["tools", "agent"])
    graph.add_edge("finalize", END)
    return graph.compile(checkpointer=checkpointer, name="aegis-agent")


def planner_name(model: BaseChatModel) -> str:
    """Which model reads the requests, in the words help shows."""
    if isinstance(model, OfflinePlanner):
        return "the built-in rule-based planner: offline, no API key"
    name = getattr(model, "model_name", None) or getattr(model, "model", None) or model._llm_type
    return f"the chat model {name}"


def read_only_turn(request: SpecRequest, note: str | None, planner: str) -> dict[str, Any]:
    """A request that reads and spends nothing: help in words, or the read-only tool it names, called at once.

    The thread's job and draft are left as they are: the next turn goes on where the last one was.
    """
    call = read_only_call(request)
    if call is None:
        return {"messages": [AIMessage(_with_note(note, help_text(planner)), additional_kwargs={READ_ONLY: True})]}
    return {"messages": [AIMessage(note or "", tool_calls=[call], additional_kwargs={READ_ONLY: True})]}


def read_request(state: AgentState, request: SpecRequest, note: str | None = None) -> dict[str, Any]:
    """The intake's update: the merged draft, and the job with its spec set, or a question back in plain words.

    Anything the request did not understand is asked about first, and a number below its field's floor is refused
    naming the field: no spec is built on a guess. "Just the estimate" is the thread's intent until a turn says to
    go ahead: the planner stops after the estimate, and request_approval refuses meanwhile.
    """
    refused = out_of_range(request)
    request = request.model_copy(update=dict.fromkeys(refused))  # a refused value is not kept for later turns
    draft = merge_request(state.get("spec_draft") or {}, request)
    estimate_only = bool(state.get("estimate_only")) if request.estimate_only is None else request.estimate_only
    intent = {"spec_draft": draft, "estimate_only": estimate_only}
    if refused or request.not_understood:
        parts = []
        if refused:
            lines = "; ".join(refused.values())
            parts.append(
                f"I can't use that: {lines}. Nothing was estimated or started; say it again with a value that fits."
            )
        if request.not_understood:
            parts.append(not_understood_question(request, draft))
        return {**intent, "messages": [AIMessage(_with_note(note, "\n\n".join(parts)))]}
    if request.continue_run:
        return _continue(state, request, intent, note)
    # "how much would it cost?" re-prices the job as it is, and "go ahead" after an estimate asks for its approval.
    changed_intent = request.estimate_only is not None and (request.estimate_only or bool(state.get("estimate_only")))
    if not said(request) and not changed_intent and state.get("job"):
        return {"messages": [AIMessage(note, additional_kwargs={NOTE: True})]} if note else {}
    waiting = _thread_job(state)
    if not said(request) and waiting is not None and waiting.attempts and waiting.status == JobStatus.PLANNING:
        text = f"Going on with run {waiting.run_id} as it stands: its estimate, then the gate."
        return _parsed(intent, waiting, note, text, estimate_only)
    if draft.get("from_run"):
        return _build_on(state, intent, note)
    spec, problem = build_spec(draft)
    if spec is None:
        return {**intent, "messages": [AIMessage(_with_note(note, problem or "Please describe the job."))]}
    try:
        resolve_dataset_path(spec.dataset_path)
        if spec.eval_dataset_path:
            resolve_dataset_path(spec.eval_dataset_path)
    except AegisError as exc:
        return {**intent, "messages": [AIMessage(sentence(f"I can't use that data: {exc}"))]}
    job = without_parent(set_spec(_job_for(state, draft), spec, source="request"))
    shown = spec.model_dump(mode="json", exclude_defaults=False)
    text = (
        f"I read your request as this training spec (run {job.run_id}):\n```json\n{json.dumps(shown, indent=2)}\n```"
        f"\n{sources_text(spec, draft)}{_budget_line(job, draft)}"
    )
    return _parsed(intent, job, note, text, estimate_only)


def _parsed(intent: dict[str, Any], job: JobState, note: str | None, text: str, estimate_only: bool) -> dict[str, Any]:
    """The intake's update once the thread has a job to price: the job, and the message that sends it on."""
    only = ""
    if estimate_only:
        only = (
            "\nYou asked only for an estimate: I price it and neither run anything nor ask for approval "
            '(say "go ahead" to have it run).'
        )
    marks = {SPEC_PARSED: True, ESTIMATE_ONLY: True} if estimate_only else {SPEC_PARSED: True}
    message = AIMessage(_with_note(note, text + only), additional_kwargs=marks)
    return {**intent, "job": job.model_dump(mode="json"), "messages": [message]}


def _budget_line(job: JobState, draft: dict[str, Any]) -> str:
    if draft.get("max_budget_usd") is None:
        return ""
    return f"\nBudget for this run: hard limit {usd(job.policy.max_budget_usd)} (a request can only lower it)."


def _continue(state: AgentState, request: SpecRequest, intent: dict[str, Any], note: str | None) -> dict[str, Any]:
    """Continue run X: X continued when it stopped, or built on with the changes asked for when it finished.

    Asking to continue is asking for it to be done: only this turn's words make it an estimate ("how much would it
    cost to continue …"), not an earlier turn's."""
    intent = {**intent, "estimate_only": bool(request.estimate_only)}
    ref, waiting = request.continue_run or "", _thread_job(state)
    if waiting is not None and waiting_continue(waiting, ref) and not spec_changes(said(request)):
        return _parsed(intent, waiting, note, continued_text(waiting), intent["estimate_only"])  # priced, not yet asked
    try:
        job, record, changes = continue_or_build(
            ref, said(request), waiting, max_budget_usd=request.max_budget_usd, person=state.get("person")
        )
    except AegisError as exc:
        return {**intent, "messages": [AIMessage(_with_note(note, sentence(f"I can't continue that run: {exc}")))]}
    if job is None:  # a finished run: a new run from its weights, with the changes asked for
        budget = {"max_budget_usd": request.max_budget_usd} if request.max_budget_usd is not None else {}
        return _build_on(state, {**intent, "spec_draft": {**changes, **budget, "from_run": record.run_id}}, note)
    # A continue takes no spec of the thread's: a later request starts from what it says.
    text = continued_text(job) + _budget_line(job, said(request))
    return _parsed({**intent, "spec_draft": {}}, job, note, text, intent["estimate_only"])


def _build_on(state: AgentState, intent: dict[str, Any], note: str | None) -> dict[str, Any]:
    """A new run from a finished run's weights: the run's spec with the draft's changes, or why not in one line."""
    draft = intent["spec_draft"]
    try:
        record = named_run(draft["from_run"], _thread_job(state), trained=True)
        draft = {**draft, "from_run": record.run_id}  # later turns build on this run, whatever runs come after
        job, text = build_on(record.run_id, draft, lambda d: _job_for(state, d))
    except AegisError as exc:
        kept = {k: v for k, v in draft.items() if k != "from_run"}  # a refused parent is not tried again
        message = AIMessage(_with_note(note, sentence(f"I can't start from that run: {exc}")))
        return {**intent, "spec_draft": kept, "messages": [message]}
    return _parsed({**intent, "spec_draft": draft}, job, note, text + _budget_line(job, draft), intent["estimate_only"])


def _thread_job(state: AgentState) -> JobState | None:
    raw = state.get("job")
    return JobState.model_validate(raw) if raw else None


def _with_note(note: str | None, text: str) -> str:
    return f"{note}\n\n{text}" if note else text


def route_intake(state: AgentState) -> list[Send] | Literal["agent", "__end__"]:
    last = state["messages"][-1]
    if isinstance(last, AIMessage) and last.tool_calls:  # a read-only request's tool, called at once
        return [Send("tools", [last.tool_calls[0]])]
    if isinstance(last, AIMessage) and not (
        last.additional_kwargs.get(SPEC_PARSED) or last.additional_kwargs.get(NOTE)
    ):
        return END
    return "agent" if state.get("job") else END


def route_agent(state: AgentState) -> list[Send] | Literal["finalize"]:
    calls = unanswered_calls(state)
    return [Send("tools", [calls[0]])] if calls else "finalize"


def route_tools(state: AgentState) -> list[Send] | Literal["agent"]:
    calls = unanswered_calls(state)
    return [Send("tools", [calls[0]])] if calls else "agent"


def finalize(state: AgentState) -> dict[str, Any]:
    """Write the report once the job has trained or ended; not while a continue waits, priced, for its go-ahead."""
    raw = state.get("job")
    if not raw or is_read_only_turn(state["messages"]):  # a read-only turn leaves the job, and its report, alone
        return {}
    job = JobState.model_validate(raw)
    if job.spec is None or (not job.attempts and job.status not in TERMINAL):
        return {}
    if state.get("estimate_only") and job.status == JobStatus.PLANNING:
        return {}
    job = report_job(job)
    return {"job": job.model_dump(mode="json")}


def unanswered_calls(state: AgentState) -> list[ToolCall]:
    """The last model message's tool calls that have no answer yet, in the order the model wrote them.

    The graph runs them one per step, each seeing the state the one before it left, so a message holding
    several calls (parallel tool calls) cannot start several attempts on one approval or write the job twice.
    """
    messages = state["messages"]
    index = next((i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], AIMessage)), None)
    if index is None:
        return []
    answered = {m.tool_call_id for m in messages[index + 1 :] if isinstance(m, ToolMessage)}
    return [call for call in messages[index].tool_calls if call["id"] not in answered]


def _job_for(state: AgentState, draft: dict[str, Any]) -> JobState:
    """The thread's job for this request (``tools.job.state.job_for_request`` decides reuse and money)."""
    raw = state.get("job")
    return job_for_request(
        JobState.model_validate(raw) if raw else None,
        BudgetPolicy.model_validate(state.get("policy") or {}),
        asked_budget_usd=draft.get("max_budget_usd"),
        thread_id=state.get("thread_id") or None,
        person=state.get("person") or None,
        max_retries=state.get("max_retries", 3),
        backend=state.get("backend", AUTO),
        local_memory_limit_mb=state.get("local_memory_limit_mb"),
    )
