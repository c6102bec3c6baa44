"""One approval, one run: every way past the money gate a hostile test of the old main found, tried again.

The graph is the real one (scripted model, real tools, real spend store and local executor); where the promise
is about processes, the real `aegis` runs in processes of its own and is signalled or killed mid-training.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.session import AgentSession
from tests.processes import (
    ROOT,
    aegis,
    aegis_env,
    first_step_written,
    start_aegis,
    training_processes,
    wait_for,
)
from tests.scripted_model import ScriptedModel
from tools.core.errors import DataError
from tools.core.runlog import RunFolder
from tools.core.spec import BudgetPolicy
from tools.policy.records import HoldState, Lifecycle
from tools.policy.store import spend_store
from tools.report.approval import ApprovalAnswer

FAST = "LoRA fine-tune local:tiny-llama on {data} for 1 epoch with batch size 4, seq_len 128, for 3 steps on cpu"
LONG = "LoRA fine-tune local:tiny-llama on data/sample.jsonl with batch size 2, seq_len 128, for 3000 steps on cpu"
# Enough learning for the tiny model's loss to fall, so a run that trains passes its evals (kept small here).
LEARNS = (
    "LoRA fine-tune local:tiny-llama on data/sample.jsonl with batch size 4, seq_len 128, learning rate 1e-2, "
    "for 6 steps on cpu"
)
SMALL_EVALS = {"AEGIS_EVAL_ROWS": "8", "AEGIS_EVAL_GENERATIONS": "2", "AEGIS_EVAL_NEW_TOKENS": "16"}
AUTO = BudgetPolicy()
ASK = BudgetPolicy(max_budget_usd=5.0, soft_threshold_usd=0.0)
PRICE_PER_HOUR = "3.6"  # $0.001 a second: a CPU attempt bills something, so the money can be followed


@pytest.fixture(autouse=True)
def priced_cpu(monkeypatch):
    monkeypatch.setenv("AEGIS_LOCAL_PRICE_USD_PER_HOUR", PRICE_PER_HOUR)


def request(data: str = "data/sample.jsonl") -> str:
    return FAST.format(data=data)


def starts(folder: RunFolder) -> int:
    return sum(e.phase == "train" and e.status == "started" for e in folder.events())


def refusals(folder: RunFolder, phase: str) -> list[str]:
    return [e.message for e in folder.events() if e.phase == phase and e.data.get("refused")]


def session_with(script: list, policy: BudgetPolicy = AUTO, **kwargs) -> AgentSession:
    return AgentSession(chat_model=ScriptedModel(script=script), policy=policy, **kwargs)


def assert_money_adds_up(thread: str) -> None:
    """Captured plus held is what the attempts billed; nothing is left held once they ended."""
    store = spend_store()
    rows = store.attempts(thread_id=thread)
    money = store.money(thread)
    assert all(row.state is HoldState.CAPTURED for row in rows)
    assert money.held_usd == 0
    assert money.captured_usd == pytest.approx(sum(row.captured_usd or 0 for row in rows))


def test_parallel_run_calls_after_one_approval_start_one_attempt():
    script = [
        [("estimate_cost", {})],
        [("request_approval", {})],
        [("run_local", {}), ("run_local", {}), ("run_local", {})],
        "done",
    ]
    session = session_with(script)
    try:
        result = session.send(request())
        job = session.job(result.thread_id)  # the thread is still readable
    finally:
        session.close()
    assert starts(job.folder) == 1 and len(job.attempts) == 1
    assert [m for m in refusals(job.folder, "run_local") if "already used by attempt 1" in m] and len(
        refusals(job.folder, "run_local")
    ) == 2
    assert len(spend_store().attempts(thread_id=result.thread_id)) == 1
    assert spend_store().money(result.thread_id).captured_usd == pytest.approx(job.attempts[0].actual_cost_usd)
    assert job.attempts[0].actual_cost_usd > 0
    assert_money_adds_up(result.thread_id)


def test_calls_in_one_message_run_in_order_each_on_the_state_the_last_one_left():
    script = [[("estimate_cost", {}), ("request_approval", {}), ("run_local", {}), ("run_local", {})], "done"]
    session = session_with(script)
    try:
        result = session.send(request())
    finally:
        session.close()
    job = result.job
    assert starts(job.folder) == 1 and job.attempts[-1].status == "succeeded"
    assert len(refusals(job.folder, "run_local")) == 1


def test_one_approval_allows_one_run_not_three():
    script = [[("estimate_cost", {})], [("request_approval", {})], [("run_local", {})], [("run_local", {})]]
    script += [[("run_local", {})], "done"]
    session = session_with(script)
    try:
        result = session.send(request())
    finally:
        session.close()
    assert starts(result.job.folder) == 1
    assert all("already used" in m for m in refusals(result.job.folder, "run_local"))


def test_a_persons_cancel_is_not_undone_by_a_new_estimate():
    after_cancel = [
        [("estimate_cost", {"target_gpu": "t4"})],
        [("request_approval", {})],
        [("run_local", {})],
        [("run_on_modal", {})],
        "done",
    ]
    session = session_with([[("estimate_cost", {})], [("request_approval", {})], *after_cancel], policy=ASK)
    try:
        paused = session.send(request())
        assert paused.pending is not None
        done = session.resume(paused.thread_id, ApprovalAnswer(decision="cancel", decided_by="person:test"))
    finally:
        session.close()
    folder = done.job.folder
    assert starts(folder) == 0 and done.job.status == "cancelled"
    assert spend_store().job(done.job.run_id).lifecycle is Lifecycle.CANCELLED
    for phase in ("estimate_cost", "request_approval", "run_local"):
        assert any("cancelled" in m for m in refusals(folder, phase)), phase
    assert refusals(folder, "run_on_modal")


def test_a_new_request_after_a_cancel_is_a_new_job_through_the_gate():
    session = AgentSession("offline", policy=ASK)
    try:
        paused = session.send(request())
        cancelled = session.resume(paused.thread_id, ApprovalAnswer(decision="cancel", decided_by="person:test"))
        again = session.send(request().replace("a10g", "t4"), thread_id=paused.thread_id)
    finally:
        session.close()
    assert again.pending is not None and again.pending.run_id != cancelled.job.run_id
    assert starts(cancelled.job.folder) == 0


def copied_data(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("AEGIS_DATA_DIRS", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "rows.jsonl"
    shutil.copy(ROOT / "data" / "sample.jsonl", path)
    return path


def test_data_changed_between_pause_and_resume_voids_the_approval(tmp_path, monkeypatch):
    data = copied_data(tmp_path, monkeypatch)
    session = AgentSession("offline", policy=ASK)
    try:
        paused = session.send(request(str(data)))
        assert paused.pending is not None
        with data.open("a") as fh:
            fh.write(json.dumps({"text": "a row that was never approved"}) + "\n")
        done = session.resume(paused.thread_id, ApprovalAnswer(decision="approve", decided_by="person:test"))
    finally:
        session.close()
    assert starts(done.job.folder) == 0
    refused = refusals(done.job.folder, "run_local")
    assert refused and "the training data changed" in refused[0]


def test_a_dataset_swapped_for_a_link_after_approval_is_not_read(tmp_path, monkeypatch):
    data = copied_data(tmp_path, monkeypatch)
    outside = tmp_path / "outside" / "secret.jsonl"
    outside.parent.mkdir()
    shutil.copy(data, outside)  # the very same bytes: where the link leads is what is refused
    session = AgentSession("offline", policy=ASK)
    try:
        paused = session.send(request(str(data)))
        data.unlink()
        data.symlink_to(outside)
        done = session.resume(paused.thread_id, ApprovalAnswer(decision="approve", decided_by="person:test"))
    finally:
        session.close()
    assert starts(done.job.folder) == 0
    refused = refusals(done.job.folder, "run_local")
    assert refused and ("outside the allowed data folders" in refused[0] or "symbolic link" in refused[0])


def test_a_folder_swapped_for_a_link_is_caught_by_the_path_really_opened(tmp_path, monkeypatch):
    from tools.inputs.datafile import open_dataset

    monkeypatch.setenv("AEGIS_DATA_DIRS", str(tmp_path / "allowed"))
    inside = tmp_path / "allowed" / "sub"
    inside.mkdir(parents=True)
    (inside / "rows.jsonl").write_text('{"text": "x"}\n')
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "rows.jsonl").write_text('{"text": "secret"}\n')
    real_resolve = Path.resolve

    def swap_then_resolve(self: Path, strict: bool = False) -> Path:
        resolved = real_resolve(self, strict)
        if resolved == inside / "rows.jsonl" and inside.is_dir() and not inside.is_symlink():
            inside.rename(tmp_path / "allowed" / "was-sub")
            inside.symlink_to(outside)  # the swap lands between the check and the open
        return resolved

    monkeypatch.setattr(Path, "resolve", swap_then_resolve)
    with pytest.raises(DataError, match="outside the allowed data folders"):
        with open_dataset(inside / "rows.jsonl"):
            pass


def test_the_attempt_trains_on_its_own_copy_of_the_approved_bytes():
    session = session_with([[("estimate_cost", {})], [("request_approval", {})], [("run_local", {})], "done"])
    try:
        result = session.send(request())
    finally:
        session.close()
    config = json.loads((result.job.folder.root / "attempt-1" / "config.json").read_text())
    trained_on = Path(config["dataset_path"])
    # the run's own copy, made when the spec was prepared (run/data/<digest>/), never the source file
    assert trained_on.is_relative_to(result.job.folder.root) and trained_on.name == "train.jsonl"
    assert trained_on.resolve() != (ROOT / "data" / "sample.jsonl").resolve()
    copy = trained_on.read_bytes()
    assert copy == (ROOT / "data" / "sample.jsonl").read_bytes()
    started = next(e for e in result.job.folder.events() if e.phase == "train" and e.status == "started")
    assert started.data["data_digest"] == result.job.data_digest


def test_money_spent_earlier_in_the_thread_is_counted_by_a_new_request():
    cpu = "LoRA fine-tune local:tiny-llama on data/sample.jsonl with batch size 4, seq_len 128, for 3 steps on cpu"
    session = AgentSession("offline", policy=BudgetPolicy(max_budget_usd=5.0, soft_threshold_usd=5.0))
    try:
        first = session.send(cpu)
        spent = spend_store().money(first.thread_id).captured_usd
        second = session.send(cpu.replace("3 steps", "2 steps"), thread_id=first.thread_id)
    finally:
        session.close()
    assert first.job.run_id != second.job.run_id and spent > 0
    gate = next(e for e in second.job.folder.events() if e.phase == "gate")
    assert gate.data["gate"]["spent_usd"] == pytest.approx(spent)
    assert_money_adds_up(first.thread_id)


@pytest.mark.slow
def test_two_resumes_at_once_approve_and_train_once(tmp_path):
    env = aegis_env(
        tmp_path, AEGIS_SOFT_THRESHOLD_USD="0", AEGIS_LOCAL_PRICE_USD_PER_HOUR=PRICE_PER_HOUR, **SMALL_EVALS
    )
    paused = aegis(env, "run", LEARNS, timeout=300)
    assert paused.returncode == 3, paused.stdout + paused.stderr
    thread = next(line.split()[-1] for line in paused.stdout.splitlines() if line.startswith("thread:"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "resume", thread, "--approve"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    folder = RunFolder(tmp_path / "runs" / thread)
    assert starts(folder) == 1, outputs
    assert codes == [0, 2], outputs  # one trained and succeeded; the other was turned away
    loser = next(err for (out, err), p in zip(outputs, procs, strict=True) if p.returncode == 2)
    assert "busy" in loser or "no pending approval" in loser
    assert [e.phase for e in folder.events()].count("approval") == 1
    assert len(spend_store().attempts(thread_id=thread)) == 1
    assert_money_adds_up(thread)
    assert folder.report_path.exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_aegis_run_stops_training_and_writes_the_report(tmp_path, sig):
    env = aegis_env(tmp_path, AEGIS_LOCAL_PRICE_USD_PER_HOUR=PRICE_PER_HOUR)
    runs = tmp_path / "runs"
    proc = start_aegis(env, "run", LONG, "--yes", log=tmp_path / "aegis.log")
    wait_for(lambda: first_step_written(runs), 300, "the first training step")
    proc.send_signal(sig)
    assert proc.wait(timeout=90) == 130, (tmp_path / "aegis.log").read_text()[-3000:]
    assert not training_processes(runs)
    folder = RunFolder(next(p for p in runs.iterdir() if (p / "attempt-1").is_dir()))
    assert [e.status for e in folder.events() if e.phase == "train"] == ["started", "interrupted"]
    assert folder.report_path.exists() and "interrupted" in folder.report_path.read_text()
    assert_money_adds_up(folder.run_id)
    assert "Traceback" not in (tmp_path / "aegis.log").read_text()


@pytest.mark.slow
def test_ctrl_c_in_aegis_chat_stops_training_and_writes_the_report(tmp_path):
    env = aegis_env(tmp_path)
    runs = tmp_path / "runs"
    proc = start_aegis(env, "chat", log=tmp_path / "chat.log", stdin=subprocess.PIPE)
    proc.stdin.write((LONG + "\n").encode())
    proc.stdin.flush()
    wait_for(lambda: first_step_written(runs), 300, "the first training step")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=90) == 130, (tmp_path / "chat.log").read_text()[-3000:]
    assert not training_processes(runs)
    folder = RunFolder(next(p for p in runs.iterdir() if (p / "attempt-1").is_dir()))
    assert folder.report_path.exists()
    assert [e.status for e in folder.events() if e.phase == "train"] == ["started", "interrupted"]


@pytest.mark.slow
def test_killing_aegis_leaves_no_orphan_and_the_watchdog_books_the_attempt(tmp_path):
    env = aegis_env(tmp_path, AEGIS_LOCAL_PRICE_USD_PER_HOUR=PRICE_PER_HOUR)
    runs = tmp_path / "runs"
    proc = start_aegis(env, "run", LONG, "--yes", log=tmp_path / "aegis.log")
    wait_for(lambda: first_step_written(runs), 300, "the first training step")
    assert training_processes(runs)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    wait_for(lambda: not training_processes(runs), 30, "the training to be stopped")
    folder = RunFolder(next(p for p in runs.iterdir() if (p / "attempt-1").is_dir()))
    wait_for(folder.report_path.exists, 120, "the watchdog's report")
    interrupted = [e for e in folder.events() if e.phase == "train" and e.status == "interrupted"]
    assert interrupted and "died" in interrupted[0].message
    assert_money_adds_up(folder.run_id)
    assert spend_store().attempts(thread_id=folder.run_id)[0].captured_usd > 0
    time.sleep(0.5)
    assert not training_processes(runs)
