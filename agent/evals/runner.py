"""The runner: plays the person through each scenario against the real ``AgentSession``, then scores the run."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.evals.scenarios import JobRecord, Scenario, ScenarioResult, Scorecard, Transcript
from agent.evals.scoring import attempt_outcomes, final_status, gate_outcomes, score_scenario, summarize, trajectory
from tools.core.errors import AegisError
from tools.core.money import usd
from tools.core.runlog import RunFolder, new_run_id
from tools.job.state import JobState
from tools.report.approval import ApprovalAnswer

EVAL_PERSON = "person:eval"
PRICE_VAR = "AEGIS_LOCAL_PRICE_USD_PER_HOUR"
MAX_RESUMES = 20  # an agent that keeps asking for approval after a cancel must not loop the harness forever

SessionFactory = Callable[[Scenario], Any]


def run_scenario(scenario: Scenario, make_session: SessionFactory) -> ScenarioResult:
    """Play the person through one scenario, then score what the run left behind."""
    started = time.monotonic()
    transcript = Transcript(thread_id=new_run_id())  # ours, so a turn that raises still leaves its jobs findable
    session = make_session(scenario)
    with _machine_priced(scenario.local_price_usd_per_hour):
        try:
            _converse(session, scenario, transcript)
        except Exception as exc:  # a crash is a failed scenario, scored on whatever it left behind
            transcript.error = f"{type(exc).__name__}: {exc}"
        try:
            transcript.jobs = thread_jobs(session, transcript.thread_id)
        finally:
            session.close()
    checks = score_scenario(scenario, transcript)
    return ScenarioResult(
        name=scenario.name,
        description=scenario.description,
        passed=all(c.passed for c in checks),
        safety_passed=all(c.passed for c in checks if c.kind == "safety"),
        checks=checks,
        trajectory=trajectory(transcript),
        gate_outcomes=gate_outcomes(transcript),
        attempts=attempt_outcomes(transcript),
        final_status=final_status(transcript),
        final_answer=transcript.final_answer,
        run_dirs=[j.run_dir for j in transcript.jobs],
        messages=transcript.messages,
        duration_s=round(time.monotonic() - started, 1),
        error=transcript.error,
    )


@contextmanager
def _machine_priced(usd_per_hour: float | None) -> Iterator[None]:
    """This machine priced as the operator would price it (settings are read fresh), for one scenario."""
    if usd_per_hour is None:
        yield
        return
    saved = os.environ.get(PRICE_VAR)
    os.environ[PRICE_VAR] = str(usd_per_hour)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(PRICE_VAR, None)
        else:
            os.environ[PRICE_VAR] = saved


def _converse(session: Any, scenario: Scenario, t: Transcript) -> None:
    answers = list(scenario.approvals)
    clarifications = list(scenario.clarifications)
    resumes = 0

    def say(text: str) -> Any:
        calls: list[str] = []
        t.messages.append({"role": "person", "text": text})
        try:
            result = session.send(text, thread_id=t.thread_id, on_event=_collect(calls))
        except AegisError as exc:  # what the CLI and Chainlit show the person
            t.messages.append({"role": "agent", "text": f"error: {exc}"})
            return None, calls
        return result, calls

    def settle(result: Any, calls: list[str]) -> Any:
        nonlocal resumes
        while result is not None and result.pending is not None:
            _record_replies(t, result)
            resumes += 1
            if resumes > MAX_RESUMES:
                raise AegisError(f"the agent asked for approval more than {MAX_RESUMES} times")
            decision = answers.pop(0) if answers else "cancel"
            t.messages.append({"role": "approval", "text": f"{decision} ({usd(result.pending.estimated_cost_usd)})"})
            answer = ApprovalAnswer(decision=decision, decided_by=EVAL_PERSON)
            result = session.resume(
                result.thread_id, answer, spec_hash=result.pending.spec_hash, on_event=_collect(calls)
            )
        if result is not None:
            _record_replies(t, result)
        return result

    for text in scenario.turns:
        result, calls = say(text)
        result = settle(result, calls)
        while result is not None and not calls:  # words only, no tool: the agent asks back
            t.asked_back += 1
            if not clarifications:
                break
            result, calls = say(clarifications.pop(0))
            result = settle(result, calls)


def _record_replies(t: Transcript, result: Any) -> None:
    t.messages.extend({"role": "agent", "text": r} for r in result.replies)


def _collect(calls: list[str]) -> Callable[[dict[str, Any]], None]:
    def on_event(event: dict[str, Any]) -> None:
        if event.get("kind") == "tool_call":
            calls.append(str(event.get("name")))

    return on_event


def thread_jobs(session: Any, thread_id: str) -> list[JobRecord]:
    """Every job the thread ever held, oldest first, with its latest checkpointed status and its events."""
    latest: dict[str, dict[str, Any]] = {}  # first-seen order, last-seen value
    for snapshot in reversed(list(session.graph.get_state_history({"configurable": {"thread_id": thread_id}}))):
        if raw := snapshot.values.get("job"):
            latest[raw["run_id"]] = raw
    records = []
    for raw in latest.values():
        job = JobState.model_validate(raw)
        records.append(
            JobRecord(
                run_id=job.run_id, run_dir=job.run_dir, status=job.status, events=RunFolder(Path(job.run_dir)).events()
            )
        )
    return records


def run_suite(
    scenarios: list[Scenario],
    make_session: SessionFactory,
    *,
    model: str,
    scenarios_dir: str,
    min_score: float,
    on_result: Callable[[ScenarioResult], None] | None = None,
) -> Scorecard:
    started_at = datetime.now(UTC)
    results = []
    for scenario in scenarios:
        result = run_scenario(scenario, make_session)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return summarize(results, model=model, scenarios_dir=scenarios_dir, started_at=started_at, min_score=min_score)
