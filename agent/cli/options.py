"""What the commands share: argument types that check what a person types, the flags several take, exit codes."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable

from tools.run.backend import AUTO, backend_names

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PAUSED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_EVALS_FAILED = 4  # trained, and the model is kept, but its evals failed or could not run


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high], or argparse's one-line error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


def dollars(text: str) -> float:
    """An argparse type: a finite, non-negative amount of dollars."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an amount of dollars") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text} is not a finite amount of 0 dollars or more")
    return value


RETRIES = bounded_int(0, 10)
MEMORY_MB = bounded_int(64, 1 << 24)


def add_gate_flags(p: argparse.ArgumentParser) -> None:
    """--yes / --approve-up-to answer the question at the gate; --max-budget tightens the hard limit."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--yes", action="store_true", help="approve at the gate without asking (never past the limits)")
    group.add_argument("--approve-up-to", type=dollars, metavar="USD", help="approve estimates up to this amount")
    p.add_argument(
        "--max-budget", type=dollars, metavar="USD", help="tighten the hard limit for this run (never raise)"
    )


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """The retry bound, the local sandbox's memory and the size of the evals, for every command that trains."""
    p.add_argument("--max-retries", type=RETRIES, default=3, help="remediation retries allowed (default 3)")
    p.add_argument("--memory-limit-mb", type=MEMORY_MB, default=None, help="memory limit for the local sandbox")
    add_eval_flags(p)


def add_eval_flags(p: argparse.ArgumentParser) -> None:
    """How big the evals are, for every command that runs them (apply_eval_flags hands them on)."""
    evals = p.add_argument_group("evals (their time grows with each; AEGIS_EVAL_* set the same)")
    evals.add_argument("--eval-rows", type=bounded_int(1, 10_000), help="held-out rows measured (default 64)")
    evals.add_argument("--eval-generations", type=bounded_int(1, 50), help="prompts both models answer (default 5)")
    evals.add_argument("--eval-new-tokens", type=bounded_int(4, 1024), help="longest generated answer (default 120)")


EVAL_FLAGS = {"eval_rows": "AEGIS_EVAL_ROWS", "eval_generations": "AEGIS_EVAL_GENERATIONS"}
EVAL_FLAGS["eval_new_tokens"] = "AEGIS_EVAL_NEW_TOKENS"


def apply_eval_flags(args: argparse.Namespace) -> None:
    """The eval sizes a person chose on the command line, for this process (EvalThresholds.from_config reads them)."""
    for flag, variable in EVAL_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            os.environ[variable] = str(value)


def add_backend_flag(p: argparse.ArgumentParser) -> None:
    """Where training may run; by default the spec's target decides (a GPU runs where that GPU is, or not at all)."""
    p.add_argument(
        "--backend",
        "--executor",
        dest="backend",
        choices=[AUTO, *backend_names()],
        default=None,
        help="where training runs (default AEGIS_BACKEND, else auto: the backend that has the spec's target_gpu)",
    )


def add_agent_flags(p: argparse.ArgumentParser) -> None:
    """The model, where training runs, and the run flags, for every command that talks to the agent."""
    p.add_argument("--model", help="offline (default) or openai:MODEL (uses OPENAI_BASE_URL / OPENAI_API_KEY)")
    add_backend_flag(p)
    add_run_flags(p)


def standing_approval(cost_usd: float, yes: bool, approve_up_to: float | None) -> str | None:
    """Who approved on the command line (--yes, --approve-up-to) for this cost; None when a person must answer."""
    if yes:
        return "person:cli.yes"
    if approve_up_to is not None and cost_usd <= approve_up_to:
        return f"person:cli.approve-up-to-{approve_up_to:g}"
    return None
