"""`aegis train SPEC`: the deterministic pipeline, no LLM: estimate → gate → run → evals → heal → report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from rich.prompt import Prompt

from agent.cli.options import add_backend_flag, add_gate_flags, add_run_flags, apply_eval_flags, standing_approval
from agent.cli.output import TrainingProgress, console, err_console, say_job_end, show_pending
from tools.core.errors import AegisError
from tools.core.money import usd
from tools.core.settings import settings
from tools.core.spec import BudgetPolicy, load_spec
from tools.core.status import Decision
from tools.inputs.hub_data import ensure_dataset
from tools.job.approval import pending_request
from tools.job.pipeline import run_pipeline
from tools.job.probing import MAX_PROBE_STEPS, MIN_PROBE_STEPS
from tools.job.state import JobState, new_job
from tools.use.warm_start import start_from, warm_start_from

GateAnswer = tuple[Decision, str]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="run the deterministic pipeline on a spec file (no LLM)")
    p.add_argument("spec", help="a TrainingSpec as YAML or JSON")
    add_gate_flags(p)
    add_run_flags(p)
    add_backend_flag(p)
    p.add_argument(
        "--probe-steps",
        type=int,
        default=None,
        metavar="N",
        help="first a probe attempt of N steps on the target (approved and billed on its own) that re-prices the run",
    )
    p.add_argument(
        "--from",
        dest="from_run",
        metavar="RUN",
        help="start from a finished run's trained weights (its adapter, or its full weights) instead of the base",
    )
    p.set_defaults(handler=cmd_train)


def gate_answerer(yes: bool, approve_up_to: float | None) -> Callable[[JobState], GateAnswer]:
    """How `aegis train` answers the gate: --yes, --approve-up-to, a prompt on a terminal, else cancel."""

    def ask(job: JobState) -> GateAnswer:
        request = pending_request(job)
        cost = request.estimated_cost_usd
        if (approver := standing_approval(cost, yes, approve_up_to)) is not None:
            return Decision.APPROVE, approver
        if approve_up_to is not None:
            err_console.print(f"estimate {usd(cost)} is above --approve-up-to {approve_up_to:g}: cancelled")
            return Decision.CANCEL, f"person:cli.approve-up-to-{approve_up_to:g}"
        if not sys.stdin.isatty():
            err_console.print(f"approval needed for {usd(cost)}: rerun with --yes or --approve-up-to USD")
            return Decision.CANCEL, "person:cli.no-terminal"
        show_pending(request)
        answer = Prompt.ask(
            "Approve?",
            choices=[d.value for d in Decision],
            default=Decision.CANCEL.value,
        )
        return Decision(answer), "person:cli.prompt"

    return ask


def cmd_train(args: argparse.Namespace) -> int:
    if args.probe_steps is not None and not MIN_PROBE_STEPS <= args.probe_steps <= MAX_PROBE_STEPS:
        raise AegisError(
            f"--probe-steps must be from {MIN_PROBE_STEPS} to {MAX_PROBE_STEPS} (one warm-up step and one timed), "
            f"got {args.probe_steps}"
        )
    spec = load_spec(args.spec)
    for path in (spec.dataset_path, spec.eval_dataset_path):
        if path:
            ensure_dataset(path)  # a hub dataset id is downloaded (or named as unreachable) before the job opens
    warm = warm_start_from(args.from_run, spec) if args.from_run else None
    apply_eval_flags(args)
    policy = BudgetPolicy.from_config().tightened(args.max_budget)
    job = new_job(
        policy,
        max_retries=args.max_retries,
        backend=args.backend or settings().backend,
        local_memory_limit_mb=args.memory_limit_mb,
    )
    if warm is not None:
        job = start_from(job, warm)
    console.print(f"run [bold]{job.run_id}[/] → {job.run_dir}")
    with TrainingProgress() as progress:
        job = run_pipeline(
            job,
            spec,
            ask=gate_answerer(args.yes, args.approve_up_to),
            on_progress=progress.update,
            probe_steps=args.probe_steps,
        )
    return say_job_end(job)
