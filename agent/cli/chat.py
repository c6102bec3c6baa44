"""`aegis run`, `aegis resume` and `aegis chat`: the commands that talk to the agent."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.prompt import Prompt

from agent.cli.options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PAUSED,
    add_agent_flags,
    add_gate_flags,
    apply_eval_flags,
    dollars,
    standing_approval,
)
from agent.cli.output import ConsoleEvents, console, job_exit_code, print_markdown, say_evals_failed, show_pending
from agent.session import AgentSession, TurnResult
from tools.core.spec import BudgetPolicy
from tools.core.status import Decision
from tools.core.stop import stop_requested
from tools.report.approval import ApprovalAnswer

MAX_STANDING_ANSWERS = 10  # --yes answers each pause of one request; an agent that keeps asking is stopped


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="ask the agent for a fine-tune in plain words")
    p.add_argument("request", help='e.g. "LoRA fine-tune local:tiny-llama on data/sample.jsonl for 1 epoch"')
    add_gate_flags(p)
    add_agent_flags(p)
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("resume", help="answer a paused approval in a new process")
    p.add_argument("thread", help="the thread id `aegis run` printed")
    group = p.add_mutually_exclusive_group(required=True)
    for decision in Decision:
        group.add_argument(f"--{decision}", dest="decision", action="store_const", const=decision)
    add_agent_flags(p)
    p.set_defaults(handler=cmd_resume)

    p = sub.add_parser("chat", help="interactive chat with the agent in the terminal")
    add_agent_flags(p)
    p.add_argument("--max-budget", type=dollars, metavar="USD", help="tighten the hard limit (never raise)")
    p.set_defaults(handler=cmd_chat)


def _session(args: argparse.Namespace, max_budget: float | None = None) -> AgentSession:
    apply_eval_flags(args)
    policy = BudgetPolicy.from_config().tightened(max_budget)
    return AgentSession(
        args.model,
        backend=args.backend,
        policy=policy,
        max_retries=args.max_retries,
        local_memory_limit_mb=args.memory_limit_mb,
    )


def _finish(result: TurnResult, events: ConsoleEvents) -> int:
    events.stop_progress()
    for reply in result.replies:
        print_markdown(reply)
    if result.pending is not None:
        show_pending(result.pending)
        console.print(
            f"Paused. Thread [bold]{result.thread_id}[/]. Continue with: "
            f"aegis resume {result.thread_id} --approve | --optimize | --cancel"
        )
        return EXIT_PAUSED
    job = result.job
    if job is not None and job.report_path and Path(job.report_path).is_file():
        console.print(f"Report: [bold]{job.report_path}[/]")
    if stop_requested():
        return EXIT_INTERRUPTED
    if job is None:
        return EXIT_FAILED
    say_evals_failed(job)
    return job_exit_code(job)


def cmd_run(args: argparse.Namespace) -> int:
    session = _session(args, args.max_budget)
    events = ConsoleEvents()
    try:
        result = session.send(args.request, on_event=events)
        console.print(f"thread: [bold]{result.thread_id}[/]")
        for _ in range(MAX_STANDING_ANSWERS):
            if result.pending is None:
                break
            approver = standing_approval(result.pending.estimated_cost_usd, args.yes, args.approve_up_to)
            if approver is None:
                break
            answer = ApprovalAnswer(decision=Decision.APPROVE, decided_by=approver)
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


def _ask_at_the_gate(session: AgentSession, result: TurnResult, events: ConsoleEvents) -> TurnResult:
    """Put each pause of the turn to the person at the prompt, until the turn ends."""
    while result.pending is not None:
        events.stop_progress()
        for reply in result.replies:
            print_markdown(reply)
        show_pending(result.pending)
        decision = Prompt.ask(
            "approve, optimize or cancel?", choices=[d.value for d in Decision], default=Decision.CANCEL.value
        )
        answer = ApprovalAnswer(decision=Decision(decision), decided_by="person:chat")
        result = session.resume(result.thread_id, answer, spec_hash=result.pending.spec_hash, on_event=events)
    return result


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
            result = _ask_at_the_gate(session, result, events)
            if _finish(result, events) == EXIT_INTERRUPTED:
                return EXIT_INTERRUPTED
    finally:
        session.close()
    return EXIT_OK
