"""`aegis eval`: run the scripted scenarios against the agent, write the scorecard, exit by its verdict.

Exit codes: 0 every safety check passed and the score reached --min-score; 1 otherwise; 2 a usage error
(bad scenario file, unknown model) as every other `aegis` command.
"""

from __future__ import annotations

import argparse
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.evaluation import Scenario, ScenarioResult, Scorecard, load_scenarios, run_suite, write_scorecard
from tools.core.errors import AegisError
from tools.core.paths import PROJECT_ROOT, runs_dir

DEFAULT_SCENARIOS = PROJECT_ROOT / "evals" / "scenarios"
EXIT_OK, EXIT_FAILED = 0, 1


def register_eval_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score the agent on scripted scenarios (safety and quality checks)")
    p.add_argument("--scenarios", type=Path, default=DEFAULT_SCENARIOS, help="folder of *.yaml scenarios")
    p.add_argument("--model", help="offline (default) or openai:MODEL (uses OPENAI_BASE_URL / OPENAI_API_KEY)")
    p.add_argument("--out", type=Path, help="where the scorecard goes (default runs/evals/<timestamp>/)")
    p.add_argument("--min-score", type=float, default=1.0, help="passed checks / all checks needed (default 1.0)")
    p.add_argument("--only", action="append", metavar="NAME", help="run only this scenario (repeatable)")
    p.add_argument("--langsmith", action="store_true", help="push the results to LangSmith as an experiment")
    p.set_defaults(handler=cmd_eval)


def session_factory(model: str | None, db_path: Path, chat_model: Any = None) -> Any:
    """One fresh AgentSession per scenario, with the scenario's policy and limits; the model passes through."""
    from agent.session import AgentSession

    def make(scenario: Scenario) -> AgentSession:
        return AgentSession(
            model,
            executor="local",
            policy=scenario.policy,
            max_retries=scenario.max_retries,
            local_memory_limit_mb=scenario.memory_limit_mb,
            chat_model=chat_model() if chat_model is not None else None,
            db_path=db_path,
        )

    return make


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
    from agent.models import make_chat_model, model_choice

    if not 0.0 <= min_score <= 1.0:
        raise AegisError(f"--min-score must be between 0 and 1, got {min_score:g}")
    scenarios = load_scenarios(scenarios_dir)
    if only:
        unknown = sorted(set(only) - {s.name for s in scenarios})
        if unknown:
            raise AegisError(f"no scenario named {', '.join(unknown)} in '{scenarios_dir}'")
        scenarios = [s for s in scenarios if s.name in only]
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


def push_to_langsmith(card: Scorecard, scenarios: list[Scenario], client: Any = None) -> str:
    """Log the scorecard as a LangSmith experiment: a dataset of the scenarios, one run each, one score per check.

    Needs LANGSMITH_API_KEY (LANGSMITH_ENDPOINT for a self-hosted server); returns the experiment's name.
    """
    import langsmith

    if client is None:
        if not os.environ.get("LANGSMITH_API_KEY"):
            raise AegisError("--langsmith needs LANGSMITH_API_KEY (and LANGSMITH_ENDPOINT for a self-hosted server)")
        client = langsmith.Client(auto_batch_tracing=False)
    dataset_name = os.environ.get("AEGIS_EVAL_DATASET", "aegis-agent-scenarios")
    if client.has_dataset(dataset_name=dataset_name):
        dataset = client.read_dataset(dataset_name=dataset_name)
    else:
        dataset = client.create_dataset(dataset_name, description="Aegis-ML scripted agent eval scenarios")
    by_name = {s.name: s for s in scenarios}
    experiment = f"aegis-eval-{card.model.replace(':', '-')}-{card.started_at.strftime('%Y%m%d-%H%M%S')}"
    project = client.create_project(
        experiment,
        reference_dataset_id=dataset.id,
        metadata={"model": card.model, "score": card.score, "safety_failures": card.safety_failures},
    )
    for result in card.scenarios:
        scenario = by_name[result.name]
        example = client.create_example(
            inputs=scenario.model_dump(mode="json", exclude={"expect"}),
            reference_outputs=scenario.expect.model_dump(mode="json"),
            dataset_id=dataset.id,
            metadata={"scenario": scenario.name},
        )
        run_id = uuid.uuid4()
        now = datetime.now(UTC)
        client.create_run(
            name=f"scenario:{result.name}",
            run_type="chain",
            inputs={"turns": scenario.turns},
            outputs={
                "final_answer": result.final_answer,
                "trajectory": result.trajectory,
                "final_status": result.final_status,
                "gate_outcomes": result.gate_outcomes,
            },
            project_name=experiment,
            reference_example_id=example.id,
            id=run_id,
            start_time=now,
            end_time=now,
            error=result.error,
            tags=["aegis-eval", f"model:{card.model}"],
        )
        for check in result.checks:
            client.create_feedback(
                run_id,
                key=f"{check.kind}:{check.name}",
                score=int(check.passed),
                comment=check.detail,
                session_id=project.id,
            )
        client.create_feedback(run_id, key="scenario_passed", score=int(result.passed), session_id=project.id)
    client.flush()
    return experiment
