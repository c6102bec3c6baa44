"""The operator's levers reach requests already waiting and runs already running, from every entry.

`aegis spend freeze` refuses every new attempt (the CLI's run, train and resume, the chat, the chat page's path
through a session with its signed-in person); `--stop-running` stops a running one, booked as interrupted with its
report written; a limit lowered while a request waits at the gate refuses its approval with the scope named.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agent.session import AgentSession
from tests.agent.test_ui_spend import _say
from tests.processes import aegis, aegis_env, first_step_written, start_aegis, training_processes, wait_for
from tools.core.runlog import RunFolder
from tools.core.spec import BudgetPolicy
from tools.policy.records import HoldState
from tools.policy.store import spend_store

FAST = "LoRA fine-tune local:tiny-llama on data/sample.jsonl for 1 epoch with batch size 4, seq_len 128, for 3 steps on cpu"
LONG = "LoRA fine-tune local:tiny-llama on data/sample.jsonl with batch size 2, seq_len 128, for 3000 steps on cpu"
PRICE_PER_HOUR = "3.6"


def thread_of(out: str) -> str:
    return next(line.split()[-1] for line in out.splitlines() if line.startswith("thread:"))


@pytest.mark.slow
def test_a_frozen_store_refuses_the_cli_the_chat_and_the_chat_page(tmp_path: Path, monkeypatch) -> None:
    env = aegis_env(tmp_path, AEGIS_USER="carol")
    frozen = aegis(env, "spend", "freeze", "--reason", "budget review", timeout=60)
    assert frozen.returncode == 0, frozen.stderr
    ran = aegis(env, "run", FAST, "--yes", timeout=300)
    assert (
        ran.returncode != 0 and "spending is frozen by the operator (carol: budget review)" in ran.stdout + ran.stderr
    )
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {"model_name": "local:tiny-llama", "dataset_path": "data/sample.jsonl", "max_steps": 2, "target_gpu": "cpu"}
        )
    )
    trained = aegis(env, "train", str(spec), "--yes", timeout=300)
    assert trained.returncode != 0 and "spending is frozen" in trained.stdout + trained.stderr
    monkeypatch.setenv("AEGIS_RUNS_DIR", env["AEGIS_RUNS_DIR"])
    monkeypatch.setenv("AEGIS_HOME", env["AEGIS_HOME"])
    session = AgentSession(policy=BudgetPolicy())
    try:
        for person in (None, "dave@example.com"):  # the chat (the CLI's person), the chat page (its signed-in user)
            turn = session.send(FAST, person=person)
            assert turn.job is not None and turn.job.status == "refused"
            assert "spending is frozen by the operator" in " ".join(turn.replies)
    finally:
        session.close()
    assert spend_store().attempts() == []
    assert {r.person for r in spend_store().ledger()} >= {"carol", "dave@example.com"}
    assert aegis(env, "spend", "unfreeze", timeout=60).returncode == 0
    aegis(env, "run", FAST, "--yes", timeout=300)  # its evals may fail after 3 steps; what matters is that it ran
    assert len(spend_store().attempts()) == 1


@pytest.mark.slow
def test_freeze_stop_running_stops_a_running_attempt_and_writes_its_report(tmp_path: Path, monkeypatch) -> None:
    env = aegis_env(tmp_path, AEGIS_LOCAL_PRICE_USD_PER_HOUR=PRICE_PER_HOUR)
    runs = tmp_path / "runs"
    proc = start_aegis(env, "run", LONG, "--yes", log=tmp_path / "aegis.log")
    wait_for(lambda: first_step_written(runs), 300, "the first training step")
    assert aegis(env, "spend", "freeze", "--stop-running", timeout=60).returncode == 0
    proc.wait(timeout=120)
    log = (tmp_path / "aegis.log").read_text()
    assert not training_processes(runs), log[-3000:]
    folder = RunFolder(next(p for p in runs.iterdir() if (p / "attempt-1").is_dir()))
    assert [e.status for e in folder.events() if e.phase == "train"] == ["started", "interrupted"], log[-3000:]
    assert folder.report_path.exists()
    monkeypatch.setenv("AEGIS_HOME", env["AEGIS_HOME"])
    rows = spend_store().attempts(thread_id=folder.run_id)
    assert [r.state for r in rows] == [HoldState.CAPTURED] and 0 < (rows[0].captured_usd or 0) < rows[0].held_usd
    assert "Traceback" not in log


@pytest.mark.slow
def test_a_limit_lowered_while_a_request_waits_refuses_its_approval(tmp_path: Path) -> None:
    env = aegis_env(tmp_path, AEGIS_SOFT_THRESHOLD_USD="0", AEGIS_LOCAL_PRICE_USD_PER_HOUR=PRICE_PER_HOUR)
    paused = aegis(env, "run", FAST, timeout=300)
    assert paused.returncode == 3, paused.stdout + paused.stderr
    thread = thread_of(paused.stdout)
    lowered = {**env, "AEGIS_MAX_BUDGET_USD": "0.000001"}  # the operator's emergency stop, after the request
    resumed = aegis(lowered, "resume", thread, "--approve", timeout=300)
    said = resumed.stdout + resumed.stderr
    assert resumed.returncode != 0 and "exceeds the hard limit of under $0.0001" in said, said
    assert "Traceback" not in said
    monthly = {**env, "AEGIS_PERSON_MONTH_USD": "0.00001"}
    again = aegis(monthly, "run", FAST, "--yes", timeout=300)
    assert again.returncode != 0 and "monthly limit: under $0.0001" in again.stdout + again.stderr


def test_a_frozen_store_refuses_the_chat_page_naming_the_brake(tmp_path: Path, monkeypatch) -> None:
    """The chat page's own message handler, a signed-in user, no browser: the reply says why nothing starts."""
    monkeypatch.setenv("AEGIS_SPEND_DB", str(tmp_path / "spend.sqlite"))
    spend_store().freeze("carol", "quarter end")
    told, _ = asyncio.run(_say("tab-erin", "erin", FAST))
    assert any("spending is frozen by the operator (carol: quarter end)" in text for text in told), told
    assert spend_store().attempts() == []
    assert [(r.person, r.scope) for r in spend_store().ledger()] == [("erin", "freeze")]
