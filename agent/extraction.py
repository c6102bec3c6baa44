"""What a chat model answers, made usable or replaced: never a traceback, never a silent guess.

A small model behind an OpenAI-compatible endpoint may answer the intake with prose, with JSON that is
not the schema, or with a tool call instead of an answer; and in the agent loop with tool calls whose
arguments are not JSON, tools that do not exist, or a tool call written out as text. Each such answer is
shown back to the model with what was wrong, a bounded number of times; after that the offline rules
take over (the rule parser for the intake, the standard plan in the loop) and the person is told so.
"""

from __future__ import annotations

import json
import re
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_function
from langgraph.errors import GraphBubbleUp
from pydantic import ValidationError

from agent.intake import SpecRequest, parse_request
from agent.models import ModelTimeout
from agent.results import ReadOnlyName, ToolName
from tools.core.spec import format_validation_error

MAX_TRIES = 3  # the first answer and two retries, each shown what was wrong with the one before
FALLBACK = "aegis_offline_fallback"  # set on the loop's messages once the offline plan has taken over
# The schema as JSON (not the pydantic class), so an answer that does not parse comes back with its raw text.
REQUEST_SCHEMA = convert_to_openai_function(SpecRequest)
_TOOL_TEXT = re.compile(
    r"<tool_call>|\"(?:name|function)\"\s*:|\b(?:" + "|".join([*ToolName, *ReadOnlyName]) + r")\s*\("
)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:400]}" if text else type(exc).__name__


def _text_of(message: Any) -> str:
    if isinstance(message, BaseMessage):
        if isinstance(message, AIMessage) and message.tool_calls and not message.content:
            return json.dumps([{"name": c["name"], "args": c["args"]} for c in message.tool_calls])
        return str(message.content)
    return "" if message is None else str(message)


def read_structured(result: Any) -> tuple[SpecRequest | None, str | None, str]:
    """(request, problem, raw text) of what structured output returned, in any of the shapes models give."""
    if isinstance(result, SpecRequest):
        return result, None, ""
    if isinstance(result, dict) and {"raw", "parsing_error"} <= set(result):
        raw = _text_of(result.get("raw"))
        if result.get("parsing_error") is not None:
            return None, f"the answer is not a JSON object of the schema ({_one_line(result['parsing_error'])})", raw
        result = result.get("parsed")
    else:
        raw = json.dumps(result, default=str) if isinstance(result, dict) else _text_of(result)
    if isinstance(result, SpecRequest):
        return result, None, raw
    if not isinstance(result, dict):
        return None, f"the answer is a {type(result).__name__}, not a JSON object of the schema", raw
    unknown = sorted(set(result) - set(SpecRequest.model_fields))
    if unknown:
        return None, f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not in the schema", raw
    try:
        return SpecRequest.model_validate(result), None, raw
    except ValidationError as exc:
        return None, "; ".join(format_validation_error(exc, "request")), raw


def extract_request(model: BaseChatModel, prompt: str, text: str) -> tuple[SpecRequest, str | None]:
    """The request through the model's structured output, retried with the problem shown; else the offline rules.

    Returns the request and, when the model's answer was not used as it came, a note for the person.
    """
    try:
        structured: Runnable = model.with_structured_output(REQUEST_SCHEMA, include_raw=True)
    except Exception as exc:  # a chat model without structured output
        return parse_request(text), f"The model offers no structured output ({_one_line(exc)}); {_OFFLINE_NOTE}"
    base: list[BaseMessage] = [SystemMessage(prompt), HumanMessage(text)]
    messages, problem = base, ""
    for _ in range(MAX_TRIES):
        try:
            request, problem_or_none, raw = read_structured(structured.invoke(messages))
        except GraphBubbleUp:
            raise
        except Exception as exc:  # the endpoint failed, or its own parser raised: the same treatment
            request, problem_or_none, raw = None, _one_line(exc), ""
        if request is not None:
            return request, None
        problem = problem_or_none or "no usable answer"
        retry = (
            f"That answer could not be used: {problem}. Answer again with only one JSON object of the schema "
            "(null for anything the request does not say; quote anything you could not map in not_understood)."
        )
        messages = [*base, AIMessage(raw or "(no answer)"), HumanMessage(retry)]
    note = f"The model's answers could not be read as a request after {MAX_TRIES} tries (last: {problem}); "
    return parse_request(text), note + _OFFLINE_NOTE


_OFFLINE_NOTE = "I read your request with the built-in rules instead."


def tool_call_problem(response: Any, tools: set[str]) -> str | None:
    """Why a model's message in the agent loop cannot be used as it is; None when it can."""
    if not isinstance(response, AIMessage):
        return f"the answer is a {type(response).__name__}, not a message"
    for bad in response.invalid_tool_calls:
        return (
            f"the call of '{bad.get('name') or '?'}' has arguments that are not valid JSON ({bad.get('error') or ''})"
        )
    unknown = [c["name"] for c in response.tool_calls if c["name"] not in tools]
    if unknown:
        return f"there is no tool named {', '.join(repr(n) for n in unknown)}; the tools are {', '.join(sorted(tools))}"
    if not response.tool_calls and _TOOL_TEXT.search(str(response.content)):
        return "a tool call was written as text instead of being made as a tool call"
    return None


def current_turn(messages: list[BaseMessage]) -> list[BaseMessage]:
    """The messages since the person last spoke."""
    start = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
    return messages[start + 1 :]


def next_message(
    with_tools: Runnable, fallback: Runnable, prompt: str, messages: list[BaseMessage], tools: set[str]
) -> AIMessage:
    """The loop's next message: the model's, retried with its problem shown; else the offline planner's, said so.

    A model that answers in words while the standard plan still has a step to take (the job has not ended, is
    not waiting at the gate, and the turn was more than a question) stopped before the job was done: it is
    reminded of that step, as many times as any unusable answer is retried. A call that timed out is not sent
    again. Once the offline planner took over in a turn it plans the rest of that turn.
    """
    if any(isinstance(m, AIMessage) and m.additional_kwargs.get(FALLBACK) for m in current_turn(messages)):
        return _marked(fallback.invoke(messages), "")
    plan: Any = None  # the standard plan's next message, asked for only when the model's answer is not a tool call
    extra: list[BaseMessage] = []
    problem, step, stalls = "", None, 0
    for _ in range(MAX_TRIES):
        try:
            response = with_tools.invoke([SystemMessage(prompt), *messages, *extra])
            problem_or_none = tool_call_problem(response, tools)
        except GraphBubbleUp:
            raise
        except ModelTimeout as exc:  # as slow again if asked again
            said = str(exc)
            return _marked(fallback.invoke(messages), f"{said[:1].upper()}{said[1:]}; {_CARRY_ON}")
        except Exception as exc:  # the endpoint failed or its answer could not be parsed
            response, problem_or_none = None, _one_line(exc)
        if problem_or_none is None and response.tool_calls:
            return response
        if problem_or_none is None:
            plan = plan or fallback.invoke(messages)
            step = _next_step(plan)
            if step is None:  # the job is done, or waits for the person: words are the right answer
                return response
            stalls += 1
            hint = (
                f"The job is not done: its next step is the tool {step}. Call {step} now, as a tool call; answer "
                "in words only once the job has ended or waits for the person's approval."
            )
        else:
            problem, step = problem_or_none, None
            hint = (
                f"That answer could not be used: {problem}. Call one of the tools with JSON arguments, or answer in "
                "words."
            )
        extra = [AIMessage(_text_of(response) or "(no answer)"), HumanMessage(hint)]
    return _marked(plan or fallback.invoke(messages), _takeover_note(step, stalls - 1, problem))


_CARRY_ON = "Aegis finishes the standard steps itself."


def _takeover_note(step: str | None, reminders: int, problem: str) -> str:
    """Why the offline planner took over: the model's last answer was words before the job was done, or unusable."""
    if step is not None:
        times = f"{reminders} time{'' if reminders == 1 else 's'}"
        return (
            f"The model stopped answering with tool calls before the job was done (reminded {times} of the next "
            f"step, {step}); {_CARRY_ON}"
        )
    return (
        f"The model could not call the tools properly after {MAX_TRIES} tries (last: {problem}); "
        "the built-in planner carries on with the standard plan."
    )


def _next_step(message: Any) -> str | None:
    """The tool the standard plan calls next; None when its next message is words (nothing left to do)."""
    calls = getattr(message, "tool_calls", None) or []
    return str(calls[0]["name"]) if calls else None


def _marked(message: Any, note: str) -> AIMessage:
    """The offline planner's message, marked as the fallback, with the note for the person in front."""
    text = "\n\n".join(part for part in (note, str(getattr(message, "content", "") or "")) if part)
    return AIMessage(content=text, tool_calls=getattr(message, "tool_calls", []), additional_kwargs={FALLBACK: True})
