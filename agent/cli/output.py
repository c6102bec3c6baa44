"""What the commands print: the consoles, live training progress, the agent's tool results, a pending approval.

Written to a terminal, output is Rich's: Markdown, live bars at the terminal's width. Written to a file or a pipe
(a CI log, ``make demo > demo.log``), lines are whole: no width to cut them at, Markdown as written, progress as
plain lines at a modest rate. Libraries' warnings and progress bars are kept out of both (``quiet_libraries``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from huggingface_hub import utils as hub_utils
from rich.console import Console, ConsoleDimensions
from rich.markdown import Markdown
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from agent.cli.options import EXIT_EVALS_FAILED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from agent.results import EstimateResult, EvalsResult, RemediateResult, RunResult, ToolResult, read_tool_result
from tools.core.errors import AegisError
from tools.core.money import usd
from tools.core.paths import aegis_home
from tools.core.status import JobStatus
from tools.evals.progress import EVAL_EVENT
from tools.job.healing import eval_failure
from tools.job.state import JobState
from tools.report.approval import ApprovalRequest, sources_line

PIPE_WIDTH = 1000  # columns when writing to a file or a pipe: wide enough that no table or line is cut
LINE_EVERY_S = 10.0  # progress written to a file or a pipe: a line per phase at most this often, and its last step
LOG_NAME = "aegis.log"  # under AEGIS_HOME/logs: libraries' warnings, out of the person's view
QUIETED_LOGGERS = ("py.warnings", "langgraph")  # Python's warnings (logging.captureWarnings), LangGraph's own


class WholeLineConsole(Console):
    """Rich's console, at the terminal's width in a terminal and unbounded in a file or a pipe (nothing is cut)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self.is_terminal or self._width is not None:
            return size
        return ConsoleDimensions(PIPE_WIDTH, size.height)


console = WholeLineConsole(soft_wrap=True)
err_console = WholeLineConsole(stderr=True, soft_wrap=True)


def print_markdown(text: str) -> None:
    """Markdown rendered in a terminal; as written in a file or a pipe, where rendering pads and cuts lines."""
    if console.is_terminal:
        console.print(Markdown(text))
    else:
        console.print(text, markup=False, highlight=False, emoji=False)


class _AegisLog(logging.Handler):
    """Appends each record to AEGIS_HOME/logs/aegis.log; a record that cannot be written is dropped, never shown."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            path = aegis_home() / "logs" / LOG_NAME
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as log:
                log.write(self.format(record) + "\n")
        except (OSError, AegisError):
            return


def quiet_libraries() -> Callable[[], None]:
    """Libraries' warnings into the aegis log and their progress bars off; the person sees Aegis's own lines.

    Transformers reads the Hub's setting when it is imported, so turning the Hub's bars off first turns off its
    weight-loading bars too. Returns the undo (the CLI runs in-process in tests).
    """
    handler = _AegisLog()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger(name) for name in QUIETED_LOGGERS]
    propagated = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    logging.captureWarnings(True)
    hub_bars = not hub_utils.are_progress_bars_disabled()
    hub_utils.disable_progress_bars()
    transformers_logging = sys.modules.get("transformers.utils.logging")  # imported already: told directly
    transformers_bars = transformers_logging is not None and transformers_logging.is_progress_bar_enabled()
    if transformers_logging is not None:
        transformers_logging.disable_progress_bar()

    def undo() -> None:
        logging.captureWarnings(False)
        for logger, propagate in zip(loggers, propagated, strict=True):
            logger.removeHandler(handler)
            logger.propagate = propagate
        if hub_bars:
            hub_utils.enable_progress_bars()
        if transformers_bars:
            transformers_logging.enable_progress_bar()

    return undo


def say_error(message: str) -> None:
    """One line on stderr: what a person has to fix or know."""
    err_console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)


class TrainingProgress:
    """Step, loss, tokens/s and ETA: live bars in a terminal, plain lines in a file or a pipe.

    A context manager whose ``update`` is on_progress.
    """

    def __init__(self, console: Console | None = None):
        self.console = console or WholeLineConsole(stderr=True)
        self.progress: Progress | None = None
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
        self.task: Any = None
        self.eval_tasks: dict[str, Any] = {}
        self.lines: dict[str, tuple[float, int, float, int]] = {}  # per phase: first (time, count), last (time, count)

    def __enter__(self) -> TrainingProgress:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, line: dict[str, Any]) -> None:
        if line.get("type") == EVAL_EVENT:
            self.update_evals(line)
            return
        if line.get("type") != "step":
            return
        total = int(line.get("total_steps") or 0) or None
        loss, tps = float(line.get("loss", float("nan"))), float(line.get("tokens_per_s", 0))
        detail = f"loss {loss:.4f} {tps:.0f} tok/s"
        step = int(line.get("step", 0))
        if self.progress is None:
            self.say_line("train", step, total, detail, eta=True)
            return
        if self.task is None:
            self.task = self.progress.add_task("[bold]train[/]", total=total, detail=detail)
        self.progress.update(self.task, completed=step, total=total, detail=detail)

    def update_evals(self, line: dict[str, Any]) -> None:
        """One bar per eval phase (held-out loss, leak probe, generations), as the evals go."""
        phase = str(line.get("phase", "evals"))
        total = int(line.get("total") or 0) or 1
        done = int(line.get("done") or 0) if line.get("total") else 1
        label = str(line.get("label", phase))
        elapsed = f"{float(line.get('elapsed_s') or 0):.0f} s in evals"
        if self.progress is None:
            self.say_line(f"evals {label}", done, total, elapsed)
            return
        if phase not in self.eval_tasks:
            self.eval_tasks[phase] = self.progress.add_task(f"[bold]evals[/] {label}", total=total, detail="")
        self.progress.update(self.eval_tasks[phase], completed=done, total=total, detail=elapsed)

    def say_line(self, name: str, done: int, total: int | None, detail: str, *, eta: bool = False) -> None:
        """A plain progress line: a phase's first and last count, and at most one every LINE_EVERY_S between."""
        now = time.monotonic()
        began, first, last, last_done = self.lines.get(name, (now, done, 0.0, -1))
        finished = total is not None and done >= total
        if done == last_done or (name in self.lines and not finished and now - last < LINE_EVERY_S):
            return
        self.lines[name] = (began, first, now, done)
        text = f"{name} {done}/{total or '?'} {detail}"
        if eta and total and done > first and not finished:
            text += f" ETA {timedelta(seconds=round((now - began) / (done - first) * (total - done)))}"
        self.console.print(text, markup=False, highlight=False, emoji=False)


def job_exit_code(job: JobState) -> int:
    """0 succeeded, 4 trained but the evals failed, 130 interrupted, 1 anything else that did not succeed."""
    codes = {JobStatus.SUCCEEDED: EXIT_OK, JobStatus.EVALS_FAILED: EXIT_EVALS_FAILED}
    return codes.get(job.status, EXIT_INTERRUPTED if job.status == JobStatus.INTERRUPTED else EXIT_FAILED)


def say_job_end(job: JobState) -> int:
    """How a job driven from the command line ended, in a line or two; its exit code."""
    console.print(f"run [bold]{job.run_id}[/] status: [bold]{job.status}[/]  report: {job.report_path}")
    if job.status == JobStatus.REFUSED and job.gate is not None:
        err_console.print(f"[red]refused:[/] {job.gate.reason}", highlight=False, soft_wrap=True)
    say_evals_failed(job)
    return job_exit_code(job)


def say_evals_failed(job: JobState) -> None:
    """Why a trained run's evals failed, that its model is still there to try, and, when the evals were stopped or
    could not run, how to run them again without training."""
    if job.status == JobStatus.EVALS_FAILED and job.eval_result is not None:
        unfinished = any(c.name == "evals_ran" and not c.passed for c in job.eval_result.checks)
        again = f" `aegis evaluate {job.run_id}` runs the evals again, without training." if unfinished else ""
        err_console.print(
            f"[yellow]trained, but the evals failed:[/] {eval_failure(job.eval_result)}. The model is kept: "
            f'`aegis generate {job.run_id} "..."` tries it, `aegis runs` lists it.{again}',
            highlight=False,
            soft_wrap=True,
        )


def result_detail(result: ToolResult) -> str:
    """The few facts of a tool's result worth a line in the terminal; its message when it has no facts."""
    if isinstance(result, EstimateResult) and result.ok and result.estimate is not None:
        e = result.estimate
        fits = "" if e.fits else ", does not fit"
        return f"{usd(e.estimated_cost_usd)} on {e.gpu} ({e.estimated_duration_min:.1f} min, {e.estimated_vram_gb:.2f} GB{fits})"
    if isinstance(result, RunResult) and result.ok and result.attempt is not None:
        a = result.attempt
        line = f"attempt {a.attempt}: {a.steps} steps in {a.duration_s:.0f} s, cost {usd(a.actual_cost_usd)}"
        if result.estimate is not None:  # a probe attempt: the full run, re-priced with what it measured
            e = result.estimate
            line += f"; full run re-priced: {usd(e.estimated_cost_usd)}, {e.estimated_duration_min:.1f} min (measured)"
        return line
    if isinstance(result, EvalsResult) and result.evals is not None:
        gates = [c for c in result.evals.checks if c.severity == "gate"]
        warned = [c.name for c in result.evals.checks if c.severity == "warning" and not c.passed]
        line = f"{sum(c.passed for c in gates)}/{len(gates)} checks passed"
        return line + (f"; warning: {', '.join(warned)}" if warned else "")
    if isinstance(result, RemediateResult) and result.remediation is not None:
        return result.remediation.explanation
    return result.message if result.message != result.status else ""


class ConsoleEvents:
    """Renders the agent's stream: tool calls, their typed results, live training progress."""

    def __init__(self) -> None:
        self.progress: TrainingProgress | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "progress":
            if self.progress is None:
                self.progress = TrainingProgress().__enter__()
            self.progress.update(event)
            return
        self.stop_progress()
        if kind == "tool_call":
            console.print(f"[cyan]→ {event['name']}[/]")
        elif kind == "tool_result":
            self.show_result(read_tool_result(event["text"], event.get("name")))

    def show_result(self, result: ToolResult) -> None:
        style = "green" if result.ok else "yellow"
        console.print(f"  [{style}]{result.status}[/] {result_detail(result)}")

    def stop_progress(self) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
            self.progress = None


def _how(time_source: str) -> str:
    """Which figure a person can bet on: measured on this machine, or modelled from FLOPs and constants."""
    return "measured" if time_source.startswith("measured") else "modelled"


def show_pending(request: ApprovalRequest) -> None:
    """The question at the gate: the estimate against the limits, the worst case, and each attempt's ceiling."""
    console.print(
        f"[bold yellow]Approval needed[/] for run {request.run_id}: {usd(request.estimated_cost_usd)} on "
        f"{request.gpu} ({request.estimated_duration_min:.1f} min {_how(request.time_source)}, "
        f"{request.estimated_vram_gb:.1f} GB modelled) — "
        f"soft limit {usd(request.soft_threshold_usd)}, hard limit {usd(request.max_budget_usd)}, "
        f"spent {usd(request.spent_usd)}. {request.reason}"
    )
    console.print(f"Runs on {request.backend}, {request.isolation}.", highlight=False)
    if len(request.limits) > 1:
        console.print("Limits in force: " + " · ".join(request.limits), highlight=False)
    if request.remote_code:
        files = ", ".join(f"{f.name} (sha256 {f.sha256})" for f in request.remote_code)
        console.print(f"[bold red]The model ships its own code, which this run executes:[/] {files}", highlight=False)
    if request.optimization is not None:  # the optimizer's spec, offered because the job as asked was refused
        print_markdown(request.optimization.text())
    if request.field_sources:
        console.print(sources_line(request), highlight=False)
    if request.worst_case_usd is not None:
        costs = ", ".join(f"#{a.attempt} {usd(a.estimated_cost_usd)}" for a in request.attempts)
        allows = request.retries_budget_allows
        console.print(
            f"Worst case with every retry the rules allow: {usd(request.worst_case_usd)} ({costs}); "
            f"{request.dtype}, {request.num_gpus} GPU(s); the remaining budget allows "
            f"{allows} retr{'y' if allows == 1 else 'ies'}."
        )
    if request.timeout_s is not None:
        console.print(
            f"Each attempt is stopped after {request.timeout_s / 60:.0f} min, so one attempt bills at most "
            f"{usd(request.max_attempt_cost_usd or 0.0)}."
        )
    if request.eval_plan:
        console.print(request.eval_plan, highlight=False)
