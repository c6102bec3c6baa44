"""`aegis estimate SPEC [--gpu NAME] [--json]`: the spec's quote, the same one a job shows at its gate."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from agent.cli.options import EXIT_OK, add_backend_flag
from agent.cli.output import console, err_console
from tools.core.settings import settings
from tools.core.spec import BudgetPolicy, load_spec, parse_spec
from tools.job.quoting import quote_spec
from tools.report.presenters import format_quote_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="quote cost, time and memory of a spec file (nothing runs, nothing is asked)")
    p.add_argument("spec", help="a TrainingSpec as YAML or JSON")
    p.add_argument("--gpu", help="estimate for this GPU instead of the spec's target_gpu")
    p.add_argument("--json", action="store_true", help="print the quote as JSON")
    add_backend_flag(p)
    p.set_defaults(handler=cmd_estimate)


def cmd_estimate(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    if args.gpu:
        spec = parse_spec({**spec.model_dump(), "target_gpu": args.gpu})
    with tempfile.TemporaryDirectory(prefix="aegis-estimate-") as scratch:
        _, quote = quote_spec(
            spec,
            Path(scratch),
            policy=BudgetPolicy.from_config(),
            backend_choice=args.backend or settings().backend,
            record=_say,
        )
    if args.json:
        print(quote.model_dump_json(indent=2))
    else:
        console.print(format_quote_table(quote))
    return EXIT_OK


def _say(phase: str, status: str, message: str, **_data: Any) -> None:
    """The probe's progress, on stderr: the quote itself is what stdout carries."""
    err_console.print(f"{phase}: {message}", highlight=False)
