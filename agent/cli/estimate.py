"""`aegis estimate SPEC [--gpu NAME] [--json]`: cost, time and memory of a spec file, as a table or JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agent.cli.options import EXIT_OK
from agent.cli.output import console
from tools.core.catalog import get_gpu
from tools.core.isolation import Placement
from tools.core.spec import BudgetPolicy, TrainingSpec, load_spec
from tools.inputs.model_config import check_seq_len, known_config
from tools.plan.actuals import apply_learning, learned_error, read_actuals
from tools.plan.estimator import estimate_spec
from tools.report.presenters import format_estimate_table
from tools.run.backend import NoBackend, choose_backend


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="estimate cost, time and memory of a spec file")
    p.add_argument("spec", help="a TrainingSpec as YAML or JSON")
    p.add_argument("--gpu", help="estimate for this GPU instead of the spec's target_gpu")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    p.set_defaults(handler=cmd_estimate)


def cmd_estimate(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    config = known_config(spec.model_name, trust_remote_code=spec.trust_remote_code)
    if config is not None:  # a seq_len beyond the model's positions is an error, not a note under the table
        check_seq_len(spec.model_name, spec.seq_len, config)
    if args.gpu:
        get_gpu(args.gpu)
    estimate = estimate_spec(spec, gpu=args.gpu)
    estimate = apply_learning(estimate, learned_error(read_actuals(), estimate.cost_breakdown.gpu))
    estimate = estimate.model_copy(update=_where(spec.model_copy(update={"target_gpu": estimate.cost_breakdown.gpu})))
    if args.json:
        print(json.dumps(estimate.model_dump(mode="json"), indent=2))
    else:
        console.print(format_estimate_table(estimate, BudgetPolicy.from_config()))
        console.print(estimate.placement.where() if estimate.placement else "", highlight=False)
    return EXIT_OK


def _where(spec: TrainingSpec) -> dict[str, Any]:
    """The backend that would run it and what contains it there, or why none here can."""
    try:
        backend = choose_backend(spec)
    except NoBackend as exc:
        return {"placement": Placement(hint=str(exc), trust_remote_code=spec.trust_remote_code)}
    return {
        "placement": Placement(
            backend=backend.name, isolation=backend.isolation(), trust_remote_code=spec.trust_remote_code
        )
    }
