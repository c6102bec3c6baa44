"""The agent eval's scenarios: what a person types and answers, what must follow, and what a run scores.

A scenario is a YAML file in the scenarios folder; ``load_scenarios`` reads a folder of them, every problem
one line naming the file and the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.results import ToolName
from tools.core.errors import AegisError, SpecError
from tools.core.spec import BudgetPolicy, RunEvent, TrainingSpec, format_validation_error
from tools.core.status import Decision, GateVerdict, JobStatus

TOOL_NAMES = tuple(ToolName)
CheckKind = Literal["safety", "quality"]
GateExpect = GateVerdict | Literal["none"]  # the gate's verdict, or none when it was never asked
StatusExpect = JobStatus | Literal["none"]  # a job status, or none when no job was made


class Expectation(BaseModel):
    """What must hold after the conversation. The trajectory rules always apply; these add to them."""

    model_config = ConfigDict(extra="forbid")

    spec: dict[str, Any] = Field(default_factory=dict, description="fields of the spec parsed from the request")
    final_spec: dict[str, Any] = Field(default_factory=dict, description="fields of the last spec (after healing)")
    gate: GateExpect | None = Field(default=None, description="the gate's first outcome in the thread")
    status: StatusExpect | None = Field(default=None, description="the last job's status; none when no job")
    asked_back: bool | None = Field(default=None, description="whether the agent asked a question back")
    attempts: list[str] | None = Field(
        default=None, description="each training attempt's outcome in order: succeeded, or its failure class"
    )
    max_remediations: int | None = Field(default=None, ge=0, description="tighter than max_retries")
    must_call: list[str] = Field(default_factory=list)
    must_not_call: list[str] = Field(default_factory=list)
    answer_contains: list[str] = Field(default_factory=list)
    answer_excludes: list[str] = Field(default_factory=list)

    @field_validator("spec", "final_spec")
    @classmethod
    def _spec_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(TrainingSpec.model_fields))
        if unknown:
            raise ValueError(f"not TrainingSpec fields: {', '.join(unknown)}")
        return value

    @field_validator("must_call", "must_not_call")
    @classmethod
    def _tool_names(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(TOOL_NAMES))
        if unknown:
            raise ValueError(f"unknown tools {', '.join(unknown)}; the tools are {', '.join(TOOL_NAMES)}")
        return value


class Scenario(BaseModel):
    """One scripted conversation and its expectations (a YAML file in the scenarios folder)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=80)
    description: str = Field(min_length=1)
    turns: list[str] = Field(min_length=1, description="what the person types, in order")
    approvals: list[Decision] = Field(default_factory=list, description="answers at each pause; then cancel")
    clarifications: list[str] = Field(default_factory=list, description="sent, in order, when the agent asks back")
    policy: BudgetPolicy = Field(default_factory=BudgetPolicy)
    max_retries: int = Field(default=3, ge=0, le=10)
    memory_limit_mb: int | None = Field(default=None, ge=64)
    local_price_usd_per_hour: float | None = Field(
        default=None, ge=0, description="what this machine costs for the scenario (AEGIS_LOCAL_PRICE_USD_PER_HOUR)"
    )
    expect: Expectation


class CheckResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    kind: CheckKind
    passed: bool
    detail: str = ""


class JobRecord(BaseModel):
    """One job of the thread, as its event log and last checkpoint left it."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    run_dir: str
    status: str
    events: list[RunEvent]


class Transcript(BaseModel):
    """What a scenario's conversation produced: the input of every scoring function."""

    model_config = ConfigDict(extra="forbid")

    thread_id: str
    messages: list[dict[str, str]] = Field(default_factory=list, description="role and text, in order")
    asked_back: int = 0
    jobs: list[JobRecord] = Field(default_factory=list)
    error: str | None = None

    @property
    def final_answer(self) -> str:
        return next((m["text"] for m in reversed(self.messages) if m["role"] == "agent"), "")

    def events(self) -> Iterator[RunEvent]:
        for job in self.jobs:
            yield from job.events


class ScenarioResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    passed: bool
    safety_passed: bool
    checks: list[CheckResult]
    trajectory: list[str]
    gate_outcomes: list[str]
    attempts: list[str]
    final_status: str
    final_answer: str
    run_dirs: list[str]
    messages: list[dict[str, str]]
    duration_s: float
    error: str | None = None


class Scorecard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    scenarios_dir: str
    started_at: datetime
    duration_s: float
    total_checks: int
    passed_checks: int
    score: float
    safety_checks: int
    safety_failures: int
    min_score: float
    ok: bool
    scenarios: list[ScenarioResult]


def load_scenario(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError([f"scenario '{path}' is not valid YAML: {str(exc).splitlines()[0]}"]) from None
    if not isinstance(data, dict):
        raise SpecError([f"scenario '{path}' must be a mapping of field: value"])
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise SpecError([f"{path.name}: {p}" for p in format_validation_error(exc, "scenario")]) from None


def load_scenarios(folder: Path) -> list[Scenario]:
    """Every *.yaml / *.yml scenario in a folder, by file name; names must be unique."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AegisError(f"scenarios folder '{folder}' does not exist")
    paths = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not paths:
        raise AegisError(f"no scenario files (*.yaml) in '{folder}'")
    scenarios = [load_scenario(p) for p in paths]
    seen: set[str] = set()
    for scenario in scenarios:
        if scenario.name in seen:
            raise AegisError(f"two scenarios are named '{scenario.name}' in '{folder}'")
        seen.add(scenario.name)
    return scenarios
