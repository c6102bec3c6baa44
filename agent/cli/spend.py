"""`aegis spend`: where the money went, from the spend store (never from logs), and the operator's brake.

`aegis spend [--by person|day|thread|model|gpu] [--since YYYY-MM-DD] [--chart PATH] [--json]` adds up what was
captured (billed), is held (running) and was refused per group, lists the limits in force and what each has left,
and writes a chart. `aegis spend freeze [--stop-running] [--reason TEXT]` stops every new attempt in every process
sharing the store; `aegis spend unfreeze` lifts that.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from agent.cli.options import EXIT_OK
from agent.cli.output import console
from tools.core.errors import AegisError, StorageError
from tools.core.money import usd
from tools.core.paths import runs_dir
from tools.core.person import cli_person
from tools.policy.spend_report import GroupBy, SpendReport, brake_words, build_report, parse_day
from tools.policy.store import spend_store
from tools.report.spend_chart import plot_spend


def _since(text: str) -> date:
    """An argparse type: --since as YYYY-MM-DD, or argparse's one-line error (exit code 2)."""
    try:
        return parse_day(text)
    except AegisError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "spend", help="where the money went: billed, held and refused per group; the limits and what is left"
    )
    p.add_argument(
        "--by",
        choices=[g.value for g in GroupBy],
        default=GroupBy.PERSON.value,
        help="how to group the money (default: person)",
    )
    p.add_argument(
        "--since", type=_since, metavar="YYYY-MM-DD", help="first day counted, UTC (default: the 1st of this month)"
    )
    p.add_argument("--chart", type=Path, metavar="PATH", help="where the PNG goes (default: RUNS/spend-<by>.png)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(handler=cmd_spend)
    inner = p.add_subparsers(dest="spend_command", parser_class=type(p))
    f = inner.add_parser("freeze", help="no new attempt may start anywhere until `aegis spend unfreeze`")
    f.add_argument("--stop-running", action="store_true", help="also stop the attempts running now")
    f.add_argument("--reason", default="", metavar="TEXT", help="why, shown to whoever is refused")
    f.set_defaults(handler=cmd_freeze)
    u = inner.add_parser("unfreeze", help="let attempts start again (every limit still applies)")
    u.set_defaults(handler=cmd_unfreeze)


def _tables() -> Console:
    """Where tables go: the terminal at its width, or a wide page when the output is a file or a pipe."""
    return console if console.is_terminal else Console(file=sys.stdout, width=200)


def spend_table(report: SpendReport) -> Table:
    table = Table(title=f"Spend by {report.by.value} since {report.since.isoformat()} (UTC)")
    table.add_column(report.by.value, overflow="fold")
    for name in ("captured (billed)", "held (running)", "refused"):
        table.add_column(name, justify="right")
    for g in report.groups:
        table.add_row(Text(g.group), usd(g.captured_usd), usd(g.held_usd), usd(g.refused_usd))
    t = report.totals
    table.add_section()
    table.add_row("total", usd(t.captured_usd), usd(t.held_usd), usd(t.refused_usd), style="bold")
    return table


def write_chart(report: SpendReport, path: Path | None) -> SpendReport:
    """The report with its chart written: at ``path``, else beside the runs as spend-<by>.png."""
    target = path or runs_dir() / f"spend-{report.by.value}.png"
    try:
        written = plot_spend(report, target)
    except OSError as exc:
        raise StorageError(f"the spend chart could not be written to {target}: {exc.strerror or exc}") from None
    return report.model_copy(update={"chart": str(written)})


def cmd_spend(args: argparse.Namespace) -> int:
    report = build_report(spend_store(), GroupBy(args.by), args.since, viewer=cli_person())
    report = write_chart(report, args.chart)
    if args.json:
        print(report.model_dump_json(indent=2))
        return EXIT_OK
    out = _tables()
    if not report.groups:
        out.print(
            f"nothing was billed, held or refused since {report.since.isoformat()} (UTC)", highlight=False, markup=False
        )
    else:
        out.print(spend_table(report))
    for line in report.limit_lines():
        out.print(f"limit: {line}", highlight=False, markup=False)
    out.print(report.brake_line(), highlight=False, markup=False)
    out.print(f"chart: {report.chart}", highlight=False, markup=False)
    return EXIT_OK


def cmd_freeze(args: argparse.Namespace) -> int:
    brake = spend_store().freeze(cli_person(), args.reason.strip(), stop_running=args.stop_running)
    console.print(brake_words(brake), highlight=False, markup=False)
    return EXIT_OK


def cmd_unfreeze(args: argparse.Namespace) -> int:
    brake = spend_store().unfreeze(cli_person())
    console.print(brake_words(brake), highlight=False, markup=False)
    return EXIT_OK
