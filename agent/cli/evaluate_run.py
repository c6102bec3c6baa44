"""`aegis evaluate RUN`: the model evals of a finished run again, without training (not `aegis eval`, the agent's
scenario suite)."""

from __future__ import annotations

import argparse
import json

from agent.cli.options import EXIT_INTERRUPTED, add_eval_flags, apply_eval_flags
from agent.cli.output import TrainingProgress, console, err_console, job_exit_code, say_job_end
from tools.job.state import JobState
from tools.use.reevaluate import EvaluationStopped, reevaluate_run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="re-run the model evals of a finished run without training (--eval-data FILE: on your own rows)",
    )
    p.add_argument("run", help="the run's id, a unique start of it, or `latest`")
    p.add_argument(
        "--eval-data",
        metavar="FILE",
        help="rows to evaluate on instead of the run's held-out rows (the run's format, each with its reply; "
        "read from the allowed data folders as training data is)",
    )
    p.add_argument("--json", action="store_true", help="print the new result as JSON")
    add_eval_flags(p)
    p.set_defaults(handler=cmd_evaluate_run)


def cmd_evaluate_run(args: argparse.Namespace) -> int:
    """0 the evals passed, 4 they failed (the model is kept), 2 refused, 130 stopped (the run keeps its result)."""
    apply_eval_flags(args)
    try:
        with TrainingProgress() as progress:
            job = reevaluate_run(args.run, eval_data=args.eval_data, on_progress=progress.update)
    except EvaluationStopped as exc:
        err_console.print(f"[yellow]stopped:[/] {exc}", highlight=False, soft_wrap=True)
        return EXIT_INTERRUPTED
    if args.json:
        console.print_json(json.dumps(as_json(job, args.eval_data)))
        return job_exit_code(job)
    return say_job_end(job)


def as_json(job: JobState, eval_data: str | None) -> dict:
    """The re-evaluated run: its new status and report, and the evals' checks, metrics and generations."""
    result = job.eval_result.model_dump(mode="json") if job.eval_result is not None else None
    return {
        "run_id": job.run_id,
        "status": str(job.status),
        "report": job.report_path,
        "eval_data": eval_data,
        "evals": result,
    }
