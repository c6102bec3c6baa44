"""`aegis eval`: run the scripted scenarios against the agent, write the scorecard, exit by its verdict.

Exit codes: 0 every safety check passed and the score reached --min-score; 1 otherwise; 2 a usage error
(bad scenario file, unknown model) as every other `aegis` command.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.cli.options import EXIT_FAILED, EXIT_OK
from agent.evals.experiment import push_to_langsmith
from agent.evals.runner import run_suite
from agent.evals.scenarios import Scenario, ScenarioResult, Scorecard, load_scenarios
from agent.evals.scorecard import write_scorecard
from agent.models import make_chat_model, model_choice
from agent.session import AgentSession
from tools.core.errors import AegisError
from tools.core.paths import PROJECT_ROOT, runs_dir

DEFAULT_SCENARIOS = PROJECT_ROOT / "evals" / "scenarios"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score the agent on scripted scenarios (safety and quality checks)")
    p.add_argument("--scenarios", type=Path, default=DEFAULT_SCENARIOS, help="folder of *.yaml scenarios")
    p.add_argument("--model", help="offline (default) or openai:MODEL (uses OPENAI_BASE_URL / OPENAI_API_KEY)")
    p.add_argument("--out", type=Path, help="where the scorecard goes (default runs/evals/<timestamp>/)")
    p.add_argument("--min-score", type=float, default=1.0, help="passed checks / all checks needed (default 1.0)")
    p.add_argument("--only", action="append", metavar="NAME", help="run only this scenario (repeatable)")
    p.add_argument("--langsmith", action="store_true", help="push the results to LangSmith as an experiment")
    p.set_defaults(handler=cmd_eval)


def session_factory(model: str | None, db_path: Path, chat_model: Any = None) -> Callable[[Scenario], AgentSession]:
    """One fresh AgentSession per scenario, with the scenario's policy and limits; the model passes through."""

    def make(scenario: Scenario) -> AgentSession:
        return AgentSession(
            model,
            policy=scenario.policy,
            max_retries=scenario.max_retries,
            local_memory_limit_mb=scenario.memory_limit_mb,
            chat_model=chat_model() if chat_model is not None else None,
            db_path=db_path,
        )

    return make


def _select(scenarios_dir: Path, only: list[str] | None) -> list[Scenario]:
    scenarios = load_scenarios(scenarios_dir)
    if not only:
        return scenarios
    unknown = sorted(set(only) - {s.name for s in scenarios})
    if unknown:
        raise AegisError(f"no scenario named {', '.join(unknown)} in '{scenarios_dir}'")
    return [s for s in scenarios if s.name in only]


def run_eval(
    scenarios_dir: Path,
    *,
    model: str | None = None,
    out: Path | None = None,
    min_score: float = 1.0,
    only: list[str] | None = None,
    chat_model: Any = None,
    echo: Any = print,
) -> tuple[Scorecard, Path]:
    """Load, run, score and write; ``chat_model`` (a factory) swaps in a model object, as tests do."""
    if not 0.0 <= min_score <= 1.0:
        raise AegisError(f"--min-score must be between 0 and 1, got {min_score:g}")
    scenarios = _select(scenarios_dir, only)
    if chat_model is None:
        make_chat_model(model)  # a bad model choice fails here, in one line, before any scenario runs
    name = model_choice(model) if chat_model is None else getattr(chat_model(), "_llm_type", "custom")
    out = out or runs_dir() / "evals" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)

    def progress(result: ScenarioResult) -> None:
        ok = sum(c.passed for c in result.checks)
        mark = "pass" if result.passed else ("SAFETY FAIL" if not result.safety_passed else "fail")
        echo(f"{mark:>11}  {result.name}  {ok}/{len(result.checks)}  {result.duration_s:.0f}s")

    card = run_suite(
        scenarios,
        session_factory(model, out / "checkpoints.sqlite", chat_model),
        model=name,
        scenarios_dir=str(scenarios_dir),
        min_score=min_score,
        on_result=progress,
    )
    _, md_path = write_scorecard(card, out)
    return card, md_path


def cmd_eval(args: argparse.Namespace) -> int:
    card, md_path = run_eval(args.scenarios, model=args.model, out=args.out, min_score=args.min_score, only=args.only)
    print(
        f"score {card.passed_checks}/{card.total_checks} = {card.score:.3f} (minimum {card.min_score:g}); "
        f"safety failures {card.safety_failures}/{card.safety_checks}; "
        f"{sum(r.passed for r in card.scenarios)}/{len(card.scenarios)} scenarios fully passed"
    )
    print(f"scorecard: {md_path} (and {md_path.with_suffix('.json').name})")
    if args.langsmith:
        print(f"LangSmith experiment: {push_to_langsmith(card, load_scenarios(args.scenarios))}")
    if card.safety_failures:
        print("FAIL: a safety check failed")
    elif not card.ok:
        print(f"FAIL: score below {card.min_score:g}")
    return EXIT_OK if card.ok else EXIT_FAILED
