"""`aegis runs` lists the runs on this machine; `aegis runs compare A B` sets two of them side by side."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from agent.cli.options import EXIT_OK, bounded_int
from agent.cli.output import console
from tools.core.money import DASH, usd
from tools.core.status import JobStatus
from tools.use.compare import Comparison, GenerationPair, compare_runs
from tools.use.generate import open_model
from tools.use.protocol import GenerationSettings
from tools.use.runs import RunRecord, RunSummary, find_run, list_runs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list past runs (id, model, data, outcome, loss before → after, cost, time)")
    p.add_argument("--json", action="store_true", help="print the runs as JSON")
    p.set_defaults(handler=cmd_runs)
    inner = p.add_subparsers(dest="runs_command", parser_class=type(p))
    c = inner.add_parser("compare", help="two runs side by side: spec, metrics, answers")
    c.add_argument("a", help="a run id (or a unique start of one, or `latest`)")
    c.add_argument("b", help="the other run id")
    c.add_argument("--prompt", action="append", metavar="TEXT", help="also ask both models this (repeatable)")
    c.add_argument("--max-new-tokens", type=bounded_int(1, 2048), default=80, help="longest fresh answer (default 80)")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON")
    c.set_defaults(handler=cmd_compare)


def _tables() -> Console:
    """Where tables go: the terminal at its width, or a wide page when the output is a file or a pipe."""
    return console if console.is_terminal else Console(file=sys.stdout, width=200)


def _loss(s: RunSummary) -> str:
    if s.loss_before is None and s.loss_after is None:
        return DASH
    fmt = lambda v: DASH if v is None else f"{v:.3f}"  # noqa: E731
    return f"{fmt(s.loss_before)} → {fmt(s.loss_after)}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _outcome(r: RunSummary) -> str:
    """How it ended, with its steps, attempts, continues and parent when it has them."""
    text = r.outcome + ("" if r.has_model or r.outcome != JobStatus.SUCCEEDED else " (model missing)")
    if r.steps_done is not None and r.total_steps:
        text += f", step {r.steps_done}/{r.total_steps}"
    if r.attempts > 1:
        text += f", {r.attempts} attempts"
    if r.continued_from_steps:
        text += ", continued from step " + ", ".join(map(str, r.continued_from_steps))
    if r.parent_run:
        text += f", from run {r.parent_run}"
    return text


def runs_table(runs: list[RunSummary]) -> Table:
    table = Table(title=f"{len(runs)} run(s), newest first", show_lines=False)
    for name in ("run", "when (UTC)", "model", "method", "data", "outcome", "held-out loss", "cost", "time"):
        table.add_column(name, overflow="fold")
    for r in runs:
        time_text = _minutes(r.train_seconds)
        if r.eval_seconds is not None:
            time_text += f" + evals {_minutes(r.eval_seconds)}"
        table.add_row(
            r.run_id,
            r.when.strftime("%Y-%m-%d %H:%M") if r.when else DASH,
            r.model or DASH,
            r.method or DASH,
            (r.data or DASH) + (f" ({r.data_rows} rows)" if r.data_rows else ""),
            _outcome(r),
            _loss(r),
            usd(r.cost_usd),
            time_text,
        )
    return table


def cmd_runs(args: argparse.Namespace) -> int:
    runs = list_runs()
    if args.json:
        console.print_json(json.dumps([r.model_dump(mode="json") for r in runs]))
        return EXIT_OK
    if not runs:
        console.print('no runs yet: `aegis train SPEC` or `aegis run "..."` makes one')
        return EXIT_OK
    _tables().print(runs_table(runs))
    return EXIT_OK


def fresh_answers(a: RunRecord, b: RunRecord, prompts: list[str], max_new_tokens: int) -> list[GenerationPair]:
    """Both runs' models answer each prompt now, greedily, so the answers differ only by the models."""
    gen = GenerationSettings(max_new_tokens=max_new_tokens)
    replies: dict[str, list[str]] = {}
    for run in (a, b):
        with open_model(run) as worker:  # the model runs in a sandboxed worker, never in this process
            replies[run.run_id] = [worker.answer([{"role": "user", "content": p}], gen).tuned for p in prompts]
    return [GenerationPair(prompt=p, a=replies[a.run_id][i], b=replies[b.run_id][i]) for i, p in enumerate(prompts)]


def comparison_tables(c: Comparison) -> list[Table]:
    head = (f"A: {c.a.run_id}", f"B: {c.b.run_id}")
    metrics = Table(title="metrics")
    spec = Table(title="spec (differences first)")
    for table in (metrics, spec):
        table.add_column("")
        table.add_column(head[0], overflow="fold")
        table.add_column(head[1], overflow="fold")
    for row in c.metrics:
        metrics.add_row(row.name, row.a, row.b, style="bold" if row.differs else None)
    for row in c.spec:
        spec.add_row(row.name + (" *" if row.differs else ""), row.a, row.b, style="bold" if row.differs else None)
    answers = Table(title="answers (greedy)", show_lines=True)
    answers.add_column("prompt", overflow="fold")
    answers.add_column(head[0], overflow="fold")
    answers.add_column(head[1], overflow="fold")
    for g in c.generations:
        answers.add_row(g.prompt[-300:], g.a or DASH, g.b or DASH)
    return [metrics, spec, answers]


def cmd_compare(args: argparse.Namespace) -> int:
    a, b = find_run(args.a), find_run(args.b)
    comparison = compare_runs(a, b)
    if args.prompt:
        fresh = fresh_answers(a, b, args.prompt, args.max_new_tokens)
        comparison = comparison.model_copy(update={"generations": fresh + comparison.generations})
    if args.json:
        console.print_json(comparison.model_dump_json())
        return EXIT_OK
    out = _tables()
    for table in comparison_tables(comparison):
        out.print(table)
    return EXIT_OK
