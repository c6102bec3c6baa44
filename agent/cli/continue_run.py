"""`aegis continue RUN`: continue a run that stopped from its newest verified checkpoint, with its own approval."""

from __future__ import annotations

import argparse

from agent.cli.options import add_gate_flags
from agent.cli.output import TrainingProgress, say_job_end
from agent.cli.train import gate_answerer
from tools.use.continuing import continue_pipeline


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "continue",
        help="continue a run that stopped (interrupted, failed, timed out, lost) from its newest checkpoint",
    )
    p.add_argument("run", help="the run's id, a unique start of it, or `latest`")
    add_gate_flags(p)
    p.set_defaults(handler=cmd_continue)


def cmd_continue(args: argparse.Namespace) -> int:
    with TrainingProgress() as progress:
        job = continue_pipeline(
            args.run,
            ask=gate_answerer(args.yes, args.approve_up_to),
            on_progress=progress.update,
            max_budget_usd=args.max_budget,
        )
    return say_job_end(job)
