"""The `aegis` command line. Every user-facing error is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console

from agent.options import MEMORY_MB, RETRIES, usd
from tools.core.errors import AegisError
from tools.core.paths import aegis_home
from tools.core.spec import format_validation_error
from tools.core.stop import install_signal_handlers

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one line with exit code 2 (its default), no usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        err_console.print(f"[red]error:[/] {message} (see `{self.prog} --help`)", highlight=False, soft_wrap=True)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aegis", description="Fine-tune language models safely, through guarded tools.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("estimate", help="estimate cost, time and memory of a spec file")
    p.add_argument("spec", help="a TrainingSpec as YAML or JSON")
    p.add_argument("--gpu", help="estimate for this GPU instead of the spec's target_gpu")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    p.set_defaults(handler=_cmd_estimate)

    p = sub.add_parser("train", help="run the deterministic pipeline on a spec file (no LLM)")
    p.add_argument("spec", help="a TrainingSpec as YAML or JSON")
    _add_gate_flags(p)
    p.add_argument("--max-retries", type=RETRIES, default=3, help="remediation retries allowed (default 3)")
    p.add_argument("--memory-limit-mb", type=MEMORY_MB, default=None, help="memory limit for the local sandbox")
    p.set_defaults(handler=_cmd_train)

    from agent.commands import register_agent_commands
    from agent.eval_command import register_eval_command
    from agent.ui_command import register_ui_command

    register_agent_commands(sub)
    register_ui_command(sub)
    register_eval_command(sub)
    return parser


def _add_gate_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--yes", action="store_true", help="approve at the gate without asking (never past the limits)")
    group.add_argument("--approve-up-to", type=usd, metavar="USD", help="approve estimates up to this amount")
    p.add_argument("--max-budget", type=usd, metavar="USD", help="tighten the hard limit for this run (never raise)")


def _cmd_estimate(args: argparse.Namespace) -> int:
    from tools.core.catalog import get_gpu
    from tools.core.spec import BudgetPolicy, load_spec
    from tools.plan.actuals import apply_learning, learned_error, read_actuals
    from tools.plan.estimator import estimate_spec, format_estimate_table

    spec = load_spec(args.spec)
    if args.gpu:
        get_gpu(args.gpu)
    estimate = estimate_spec(spec, gpu=args.gpu)
    estimate = apply_learning(estimate, learned_error(read_actuals(), estimate.cost_breakdown.gpu))
    if args.json:
        print(json.dumps(estimate.model_dump(mode="json"), indent=2))
    else:
        console.print(format_estimate_table(estimate, BudgetPolicy.from_config()))
    return 0


def standing_approval(cost_usd: float, yes: bool, approve_up_to: float | None) -> str | None:
    """Who approved on the command line (--yes, --approve-up-to) for this cost; None when a person must answer."""
    if yes:
        return "person:cli.yes"
    if approve_up_to is not None and cost_usd <= approve_up_to:
        return f"person:cli.approve-up-to-{approve_up_to:g}"
    return None


def gate_answerer(yes: bool, approve_up_to: float | None) -> Callable:
    """How `aegis train` answers the gate: --yes, --approve-up-to, a prompt on a terminal, else cancel."""
    from rich.prompt import Prompt

    def ask(job):  # noqa: ANN001, ANN202 - JobState, (Decision, str)
        cost = job.estimate.estimated_cost_usd
        if (approver := standing_approval(cost, yes, approve_up_to)) is not None:
            return "approve", approver
        if approve_up_to is not None:
            err_console.print(f"estimate ${cost:.2f} is above --approve-up-to {approve_up_to:g}: cancelled")
            return "cancel", f"person:cli.approve-up-to-{approve_up_to:g}"
        if not sys.stdin.isatty():
            err_console.print(f"approval needed for ${cost:.2f}: rerun with --yes or --approve-up-to USD")
            return "cancel", "person:cli.no-terminal"
        answer = Prompt.ask(
            f"Estimated ${cost:.2f} (soft limit ${job.policy.soft_threshold_usd:.2f}, "
            f"hard ${job.policy.max_budget_usd:.2f}). Approve?",
            choices=["approve", "optimize", "cancel"],
            default="cancel",
        )
        return answer, "person:cli.prompt"

    return ask


def _cmd_train(args: argparse.Namespace) -> int:
    from agent.progress import TrainingProgress
    from tools.core.spec import BudgetPolicy, load_spec
    from tools.job.pipeline import run_pipeline
    from tools.job.steps import new_job

    spec = load_spec(args.spec)
    policy = BudgetPolicy.from_config().tightened(args.max_budget)
    job = new_job(policy, max_retries=args.max_retries, local_memory_limit_mb=args.memory_limit_mb)
    console.print(f"run [bold]{job.run_id}[/] → {job.run_dir}")
    with TrainingProgress() as progress:
        job = run_pipeline(job, spec, ask=gate_answerer(args.yes, args.approve_up_to), on_progress=progress.update)
    console.print(f"status: [bold]{job.status}[/]  report: {job.report_path}")
    if job.status == "refused" and job.gate is not None:
        err_console.print(f"[red]refused:[/] {job.gate.reason}", highlight=False, soft_wrap=True)
    return {"succeeded": 0, "interrupted": 130}.get(job.status, 1)


def main(argv: list[str] | None = None) -> int:
    """Every failure a person can meet is one line on stderr: 2 for input to fix, 1 for a run or store that failed."""
    restore = install_signal_handlers()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.handler(args) or 0)
    except AegisError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except ValidationError as exc:
        err_console.print(
            f"[red]error:[/] {'; '.join(format_validation_error(exc, 'input'))}", highlight=False, soft_wrap=True
        )
        return EXIT_USAGE
    except SystemExit as exc:  # argparse: --help (0) or a bad argument, already said in one line (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:  # the last line of defence: a bug is one line and a file, never a traceback
        log = write_crash_log(exc)
        err_console.print(
            f"[red]error:[/] Aegis failed unexpectedly: {type(exc).__name__}: {str(exc)[:300]} "
            f"(details in {log}; nothing more was started)",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    finally:
        restore()


def write_crash_log(exc: BaseException) -> Path:
    path = aegis_home() / "logs" / f"crash-{datetime.now(UTC):%Y%m%d-%H%M%S}-{os.getpid()}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    except OSError:
        return Path("(the log could not be written)")
    return path


if __name__ == "__main__":
    sys.exit(main())
