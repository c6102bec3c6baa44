"""Subcommands that talk to the agent: run, resume, chat."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.prompt import Prompt

from agent.approval import ApprovalAnswer, ApprovalRequest
from agent.options import MEMORY_MB, RETRIES, usd
from agent.progress import TrainingProgress
from tools.core.stop import stop_requested

console = Console(soft_wrap=True)


def register_agent_commands(sub: argparse._SubParsersAction) -> None:
    from agent.cli import _add_gate_flags

    p = sub.add_parser("run", help="ask the agent for a fine-tune in plain words")
    p.add_argument("request", help='e.g. "LoRA fine-tune local:tiny-llama on data/sample.jsonl for 1 epoch"')
    _add_gate_flags(p)
    _add_agent_flags(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("resume", help="answer a paused approval in a new process")
    p.add_argument("thread", help="the thread id `aegis run` printed")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--approve", dest="decision", action="store_const", const="approve")
    group.add_argument("--optimize", dest="decision", action="store_const", const="optimize")
    group.add_argument("--cancel", dest="decision", action="store_const", const="cancel")
    _add_agent_flags(p)
    p.set_defaults(handler=cmd_resume)

    p = sub.add_parser("chat", help="interactive chat with the agent in the terminal")
    _add_agent_flags(p)
    p.add_argument("--max-budget", type=usd, metavar="USD", help="tighten the hard limit (never raise)")
    p.set_defaults(handler=cmd_chat)


def _add_agent_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="offline (default) or openai:MODEL (uses OPENAI_BASE_URL / OPENAI_API_KEY)")
    p.add_argument("--executor", choices=["local", "modal"], default="local", help="where training runs")
    p.add_argument("--max-retries", type=RETRIES, default=3, help="remediation retries allowed (default 3)")
    p.add_argument("--memory-limit-mb", type=MEMORY_MB, default=None, help="memory limit for the local sandbox")


class ConsoleEvents:
    """Renders the agent's stream: tool calls, their results, live training progress."""

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
            try:
                payload = json.loads(event["text"])
            except json.JSONDecodeError:
                payload = {"message": event["text"]}
            style = "green" if payload.get("ok") else "yellow"
            detail = payload.get("message") or payload.get("status")
            console.print(
                f"  [{style}]{payload.get('status', '')}[/] {detail if detail != payload.get('status') else ''}"
            )

    def stop_progress(self) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
            self.progress = None


def _session(args: argparse.Namespace, max_budget: float | None = None):  # noqa: ANN202
    from agent.session import AgentSession
    from tools.core.spec import BudgetPolicy

    policy = BudgetPolicy.from_config().tightened(max_budget)
    return AgentSession(
        args.model,
        executor=args.executor,
        policy=policy,
        max_retries=args.max_retries,
        local_memory_limit_mb=args.memory_limit_mb,
    )


def show_pending(request: ApprovalRequest) -> None:
    console.print(
        f"[bold yellow]Approval needed[/] for run {request.run_id}: ${request.estimated_cost_usd:.2f} on "
        f"{request.gpu} ({request.estimated_duration_min:.1f} min, {request.estimated_vram_gb:.1f} GB) — "
        f"soft limit ${request.soft_threshold_usd:.2f}, hard limit ${request.max_budget_usd:.2f}, "
        f"spent ${request.spent_usd:.2f}. {request.reason}"
    )
    if request.worst_case_usd is not None:
        costs = ", ".join(f"#{a['attempt']} ${a['estimated_cost_usd']:.2f}" for a in request.attempts)
        console.print(
            f"Worst case with every retry the rules allow: ${request.worst_case_usd:.2f} ({costs}); "
            f"{request.dtype}, {request.num_gpus} GPU(s); the remaining budget allows "
            f"{request.retries_budget_allows} retr{'y' if request.retries_budget_allows == 1 else 'ies'}."
        )
    if request.timeout_s is not None:
        console.print(
            f"Each attempt is stopped after {request.timeout_s / 60:.0f} min, so one attempt bills at most "
            f"${request.max_attempt_cost_usd or 0.0:.2f}."
        )


def _finish(result: Any, events: ConsoleEvents) -> int:
    events.stop_progress()
    for reply in result.replies:
        console.print(Markdown(reply))
    if result.pending is not None:
        show_pending(result.pending)
        console.print(
            f"Paused. Thread [bold]{result.thread_id}[/]. Continue with: "
            f"aegis resume {result.thread_id} --approve | --optimize | --cancel"
        )
        return 3
    job = result.job
    if job is not None and job.report_path and Path(job.report_path).is_file():
        console.print(f"Report: [bold]{job.report_path}[/]")
    if stop_requested():
        return 130
    return 0 if job is not None and job.status == "succeeded" else 1


def cmd_run(args: argparse.Namespace) -> int:
    from agent.cli import standing_approval

    session = _session(args, args.max_budget)
    events = ConsoleEvents()
    try:
        result = session.send(args.request, on_event=events)
        console.print(f"thread: [bold]{result.thread_id}[/]")
        for _ in range(10):
            if result.pending is None:
                break
            approver = standing_approval(result.pending.estimated_cost_usd, args.yes, args.approve_up_to)
            if approver is None:
                break
            answer = ApprovalAnswer(decision="approve", decided_by=approver)
            events.stop_progress()
            show_pending(result.pending)
            console.print(f"[green]approved[/] by {answer.decided_by}")
            result = session.resume(result.thread_id, answer, spec_hash=result.pending.spec_hash, on_event=events)
        return _finish(result, events)
    finally:
        session.close()


def cmd_resume(args: argparse.Namespace) -> int:
    session = _session(args)
    events = ConsoleEvents()
    try:
        answer = ApprovalAnswer(decision=args.decision, decided_by="person:cli.resume")
        result = session.resume(args.thread, answer, on_event=events)
        return _finish(result, events)
    finally:
        session.close()


def cmd_chat(args: argparse.Namespace) -> int:
    session = _session(args, args.max_budget)
    events = ConsoleEvents()
    thread: str | None = None
    console.print("[bold]Aegis-ML[/] — describe a fine-tune; empty line or Ctrl-D to quit.")
    try:
        while True:
            try:
                text = Prompt.ask("[bold blue]you[/]") if sys.stdin.isatty() else input()
            except EOFError:
                break
            if not text.strip():
                break
            result = session.send(text, thread_id=thread, on_event=events)
            thread = result.thread_id
            while result.pending is not None:
                events.stop_progress()
                for reply in result.replies:
                    console.print(Markdown(reply))
                show_pending(result.pending)
                decision = Prompt.ask(
                    "approve, optimize or cancel?", choices=["approve", "optimize", "cancel"], default="cancel"
                )
                answer = ApprovalAnswer(decision=decision, decided_by="person:chat")  # type: ignore[arg-type]
                result = session.resume(thread, answer, spec_hash=result.pending.spec_hash, on_event=events)
            if _finish(result, events) == 130:
                return 130
    finally:
        session.close()
    return 0
