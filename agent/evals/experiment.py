"""The scorecard as a LangSmith experiment: a dataset of the scenarios, one run each, one score per check.

Needs LANGSMITH_API_KEY (LANGSMITH_ENDPOINT for a self-hosted server); AEGIS_EVAL_DATASET names the dataset.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

import langsmith

from agent.evals.scenarios import Scenario, ScenarioResult, Scorecard
from tools.core.errors import AegisError
from tools.core.settings import settings


def push_to_langsmith(card: Scorecard, scenarios: list[Scenario], client: Any = None) -> str:
    """Log the scorecard as a LangSmith experiment; returns the experiment's name."""
    if client is None:
        if not os.environ.get("LANGSMITH_API_KEY"):
            raise AegisError("--langsmith needs LANGSMITH_API_KEY (and LANGSMITH_ENDPOINT for a self-hosted server)")
        client = langsmith.Client(auto_batch_tracing=False)
    dataset = _dataset(client, settings().eval_dataset)
    by_name = {s.name: s for s in scenarios}
    experiment = f"aegis-eval-{card.model.replace(':', '-')}-{card.started_at.strftime('%Y%m%d-%H%M%S')}"
    project = client.create_project(
        experiment,
        reference_dataset_id=dataset.id,
        metadata={"model": card.model, "score": card.score, "safety_failures": card.safety_failures},
    )
    for result in card.scenarios:
        _log_scenario(client, dataset.id, project.id, experiment, by_name[result.name], result, card.model)
    client.flush()
    return experiment


def _dataset(client: Any, name: str) -> Any:
    if client.has_dataset(dataset_name=name):
        return client.read_dataset(dataset_name=name)
    return client.create_dataset(name, description="Aegis-ML scripted agent eval scenarios")


def _log_scenario(
    client: Any,
    dataset_id: Any,
    project_id: Any,
    experiment: str,
    scenario: Scenario,
    result: ScenarioResult,
    model: str,
) -> None:
    """One example, one run and its scores: one per check, and whether the scenario passed."""
    example = client.create_example(
        inputs=scenario.model_dump(mode="json", exclude={"expect"}),
        reference_outputs=scenario.expect.model_dump(mode="json"),
        dataset_id=dataset_id,
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
        tags=["aegis-eval", f"model:{model}"],
    )
    for check in result.checks:
        client.create_feedback(
            run_id,
            key=f"{check.kind}:{check.name}",
            score=int(check.passed),
            comment=check.detail,
            session_id=project_id,
        )
    client.create_feedback(run_id, key="scenario_passed", score=int(result.passed), session_id=project_id)
