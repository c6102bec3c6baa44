"""The tools that read and spend nothing: the runs, a comparison, a dataset preview, a try, a report.

They sit beside the guarded money tools (``agent.tools``) but touch no job: no event, no estimate, no approval,
no hold. The model may call them at any time without asking anyone; each returns a ``ReadOnlyResult`` whose
``text`` is what the person reads, and a refusal (a path outside the data folders, a run that does not exist) is
one line in ``message``.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import uuid4

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall
from langchain_core.tools import BaseTool, tool

from agent.browse import compare_text, preview_text, report_text, runs_text, try_text
from agent.intake import SpecRequest, sentence
from agent.read_only_rules import LATEST_RUN, PREVIOUS_RUN
from agent.results import ReadOnlyName, ReadOnlyResult, ResultStatus, ToolResult, read_tool_result
from tools.core.errors import AegisError

Answer = Callable[[], tuple[str, str]]
READ_ONLY = "aegis_read_only"  # on the intake's message: this turn reads and spends nothing
READ_ONLY_REFUSAL = (
    "this turn is a read-only request: nothing is estimated, approved or run in it; ask for the fine-tune in a "
    "message of its own"
)


def answer(name: ReadOnlyName, fn: Answer) -> ReadOnlyResult:
    """Run one read-only answer: its one line and text, or why not in one line (never a traceback)."""
    try:
        line, text = fn()
    except AegisError as exc:
        return ReadOnlyResult(tool=name, ok=False, status=ResultStatus.REFUSED, message=" ".join(str(exc).split()))
    except Exception as exc:  # a reader bug must not end the conversation; the person is told what failed
        return ReadOnlyResult(tool=name, ok=False, status=ResultStatus.ERROR, message=f"{type(exc).__name__}: {exc}")
    return ReadOnlyResult(tool=name, ok=True, status=ResultStatus.ANSWERED, message=line, text=text)


@tool(ReadOnlyName.LIST_RUNS.value)
def list_runs(limit: int = 10) -> str:
    """List the training runs on this machine, newest first: id, model, method, outcome, loss, cost (read-only)."""
    return answer(ReadOnlyName.LIST_RUNS, lambda: runs_text(limit)).model_dump_json()


@tool(ReadOnlyName.COMPARE_RUNS.value)
def compare_runs(run_a: str = "latest", run_b: str = "previous") -> str:
    """Compare two runs side by side: metrics, spec differences, their answers (read-only).

    Runs are ids (or a unique start of one), "latest" for the newest run or "previous" for the one before it.
    """
    return answer(ReadOnlyName.COMPARE_RUNS, lambda: compare_text(run_a, run_b)).model_dump_json()


@tool(ReadOnlyName.PREVIEW_DATA.value)
def preview_data(path: str, rows: int = 5, model_name: str | None = None) -> str:
    """Show the first rows of a dataset in the allowed data folders, its format, row count and token lengths
    (min/mean/max, with model_name's tokenizer when given). Read-only; at most 20 rows are shown."""
    return answer(ReadOnlyName.PREVIEW_DATA, lambda: preview_text(path, rows, model_name)).model_dump_json()


@tool(ReadOnlyName.TRY_RUN.value)
def try_run(prompt: str, run: str = "latest") -> str:
    """Ask a finished run's fine-tuned model one prompt (greedy, in its sandboxed worker); the run is an id or
    "latest". Spends nothing and changes nothing."""
    return answer(ReadOnlyName.TRY_RUN, lambda: try_text(run, prompt)).model_dump_json()


@tool(ReadOnlyName.SHOW_REPORT.value)
def show_report(run: str = "latest") -> str:
    """Show a run's report summary and where the full REPORT.md is; the run is an id or "latest" (read-only)."""
    return answer(ReadOnlyName.SHOW_REPORT, lambda: report_text(run)).model_dump_json()


READ_ONLY_TOOLS: list[BaseTool] = [list_runs, compare_runs, preview_data, try_run, show_report]
_BY_NAME = {t.name: t for t in READ_ONLY_TOOLS}


def read_only_call(request: SpecRequest) -> ToolCall | None:
    """The tool call a read-only request makes, with what it named; None for help (no tool: words only)."""
    if request.read_only is None or request.read_only == "help":
        return None
    name = ReadOnlyName(request.read_only)
    runs = [r for r in request.runs or [] if r] or [LATEST_RUN]
    args: dict[str, object] = {}
    if name == ReadOnlyName.COMPARE_RUNS:
        args = {"run_a": runs[0], "run_b": runs[1] if len(runs) > 1 else PREVIOUS_RUN}
    elif name == ReadOnlyName.PREVIEW_DATA:
        args = {"path": request.dataset_path or ""}
        args |= {"rows": request.rows} if request.rows is not None else {}
        args |= {"model_name": request.model_name} if request.model_name else {}
    elif name == ReadOnlyName.TRY_RUN:
        args = {"run": runs[0], "prompt": request.prompt or ""}
    elif name == ReadOnlyName.SHOW_REPORT:
        args = {"run": runs[0]}
    return ToolCall(name=name.value, args=args, id=f"call_{uuid4().hex[:12]}_{name.value}", type="tool_call")


def is_read_only_turn(messages: list[BaseMessage]) -> bool:
    """Whether the person's last message was a read-only request (the intake marked its answer so)."""
    start = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
    return any(isinstance(m, AIMessage) and m.additional_kwargs.get(READ_ONLY) for m in messages[start + 1 :])


def is_read_only(name: str | None) -> bool:
    return name in _BY_NAME


def call_read_only(call: ToolCall) -> ToolResult:
    """One read-only call carried out here, outside the graph (a thread waiting at the gate keeps its pause)."""
    try:
        content = _BY_NAME[call["name"]].invoke(call["args"])
    except Exception as exc:  # arguments the tool cannot take: why, as ToolNode would answer it
        return ToolResult(
            tool=call["name"], ok=False, status=ResultStatus.ERROR, message=f"{type(exc).__name__}: {exc}"
        )
    return read_tool_result(content, call["name"])


def reply_text(results: list[ToolResult]) -> str:
    """What the person reads: each read-only answer's text, or why not in one line."""
    return "\n\n".join(
        r.text if isinstance(r, ReadOnlyResult) and r.ok else sentence(f"I can't show that: {_line(r.message)}")
        for r in results
    )


def _line(text: str) -> str:
    return " ".join(text.split())[:400]
