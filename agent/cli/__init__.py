"""The `aegis` command line: one module per command, each with its ``register(sub)`` and handler.

Every failure a person can meet is one line on stderr and an exit code: 0 ok, 1 a failed run or store,
2 bad input, 3 paused at the gate, 130 interrupted.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import traceback
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from pydantic import ValidationError

from agent.cli import chat, continue_run, estimate, evaluate, evaluate_run, runs, spend, train, ui, use
from agent.cli.options import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE
from agent.cli.output import err_console, quiet_libraries, say_error
from tools.core.errors import AegisError
from tools.core.paths import aegis_home
from tools.core.spec import format_validation_error
from tools.core.stop import install_signal_handlers
from tools.job.reconcile import reconcile_lost_attempts

COMMANDS = (estimate, train, continue_run, evaluate_run, chat, ui, evaluate, use, runs, spend)
RECONCILING = frozenset({"train", "continue", "evaluate", "run", "resume", "chat", "ui", "runs", "spend"})

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one line with exit code 2 (its default), no usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message += _did_you_mean(message)
        err_console.print(f"[red]error:[/] {message} (see `{self.prog} --help`)", highlight=False, soft_wrap=True)
        raise SystemExit(EXIT_USAGE)


def _did_you_mean(message: str) -> str:
    """'; did you mean 'estimate'?' for argparse's "invalid choice: 'estmate' (choose from ...)"; '' otherwise."""
    found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if not found:
        return ""
    choices = re.findall(r"'?([\w-]+)'?", found.group(2))
    close = difflib.get_close_matches(found.group(1), choices, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _version() -> str:
    try:
        return metadata.version("aegis-ml")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aegis", description="Fine-tune language models safely, through guarded tools.")
    parser.add_argument("--version", action="version", version=f"aegis {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Every failure a person can meet is one line on stderr: 2 for input to fix, 1 for a run or store that failed."""
    restore = install_signal_handlers()
    unquiet = quiet_libraries()
    try:
        args = build_parser().parse_args(argv)
        if args.command in RECONCILING:
            say_reconciled()
        return int(args.handler(args) or 0)
    except AegisError as exc:
        say_error(str(exc))
        return exc.exit_code
    except ValidationError as exc:
        say_error("; ".join(format_validation_error(exc, "input")))
        return EXIT_USAGE
    except SystemExit as exc:  # argparse: --help (0) or a bad argument, already said in one line (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt as exc:  # a second Ctrl-C, or the first during a model call: says which
        err_console.print(str(exc) or "interrupted", highlight=False)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the last line of defence: a bug is one line and a file, never a traceback
        log = write_crash_log(exc)
        say_error(
            f"Aegis failed unexpectedly: {type(exc).__name__}: {str(exc)[:300]} "
            f"(details in {log}; nothing more was started)"
        )
        return EXIT_FAILED
    finally:
        unquiet()
        restore()


def say_reconciled() -> None:
    """Before a command that trains or reads runs and money: book the attempts this machine lost (tools/job/
    reconcile.py), and say so. A store that cannot be read is said in the command's own words later."""
    try:
        lines = reconcile_lost_attempts()
    except AegisError:
        return
    for line in lines:
        err_console.print(f"[yellow]reconciled:[/] {line}", highlight=False, soft_wrap=True)


def write_crash_log(exc: BaseException) -> Path:
    path = aegis_home() / "logs" / f"crash-{datetime.now(UTC):%Y%m%d-%H%M%S}-{os.getpid()}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    except OSError:
        return Path("(the log could not be written)")
    return path
