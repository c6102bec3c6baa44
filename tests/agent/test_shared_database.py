"""Servers sharing one PostgreSQL (AEGIS_DATABASE_URL): a thread paused on one is answered from another, a turn in
a thread is one at a time across all of them, and a person's threads follow them to whichever server they reach.

"Servers" here are sessions and `aegis` processes with runs folders and homes of their own: the database is all
they share, so nothing passes through a file (the file lock of one machine would not see the other's turn).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.session import AgentSession, thread_lock
from agent.ui.history import ThreadIndex
from agent.ui.pending import PendingIndex
from tests.processes import ROOT, aegis, aegis_env
from tools.core.errors import AegisError, StorageError
from tools.core.spec import BudgetPolicy
from tools.policy.records import Lifecycle
from tools.policy.store import SpendStore
from tools.report.approval import ApprovalAnswer

ASK = BudgetPolicy(max_budget_usd=5.0, soft_threshold_usd=0.0)
REQUEST = "LoRA fine-tune local:tiny-llama on data/sample.jsonl with batch size 4, seq_len 128, for 3 steps on cpu"
PRICED = {"AEGIS_LOCAL_PRICE_USD_PER_HOUR": "3.6", "AEGIS_SOFT_THRESHOLD_USD": "0"}  # the CPU run costs: a person asked
SECRET = "s3cret-pw"


@pytest.fixture
def shared(postgres_url: str, monkeypatch) -> str:
    monkeypatch.setenv("AEGIS_DATABASE_URL", postgres_url)
    for name, value in PRICED.items():
        monkeypatch.setenv(name, value)
    return postgres_url


def test_a_thread_paused_on_one_server_is_answered_on_another(shared: str, tmp_path, monkeypatch) -> None:
    first = AgentSession("offline", policy=ASK)
    try:
        paused = first.send(REQUEST)
    finally:
        first.close()
    assert paused.pending is not None
    monkeypatch.setenv("AEGIS_RUNS_DIR", str(tmp_path / "other-server-runs"))  # nothing shared on disk
    second = AgentSession("offline", policy=ASK)
    try:
        assert second.pending(paused.thread_id) == paused.pending
        assert second.transcript(paused.thread_id)[0] == ("user", REQUEST)
        done = second.resume(paused.thread_id, ApprovalAnswer(decision="cancel", decided_by="person:test"))
    finally:
        second.close()
    assert done.pending is None and done.job.status == "cancelled"
    assert SpendStore(shared).job(done.job.run_id).lifecycle is Lifecycle.CANCELLED
    assert not list(tmp_path.rglob("*.sqlite"))  # checkpoints, spend and thread index all in PostgreSQL


def test_one_turn_per_thread_across_servers(shared: str) -> None:
    with thread_lock("t-1", shared):
        with pytest.raises(AegisError, match="thread t-1 is busy"):
            with thread_lock("t-1", shared):
                pass
        with thread_lock("t-2", shared):  # another thread is free
            pass
    with thread_lock("t-1", shared):  # let go when the turn ended
        pass


def test_a_persons_threads_follow_them_to_another_server(store_location: Path | str) -> None:
    here, there = ThreadIndex(store_location), ThreadIndex(store_location)
    here.add("user/ada", "t-old")
    here.add("user/ada", "t-new")
    here.add("anonymous/tab-1", "t-anon")
    assert there.latest("user/ada") == "t-new"
    there.add("user/ada", "t-old")  # talked in again: newest once more
    assert here.latest("user/ada") == "t-old"
    assert there.latest("anonymous/tab-1") is None and there.latest("user/bob") is None


def test_an_approval_asked_on_one_server_is_answered_by_its_owner_on_another(store_location: Path | str) -> None:
    here, there = PendingIndex(store_location), PendingIndex(store_location)
    here.add("t-1", "user/ada")
    here.add("t-2", "user/bob")
    assert there.owner_of("t-1") == "user/ada" and there.threads("user/bob") == ["t-2"]
    there.add("t-1", "user/ada")  # asked again: one row, still hers
    assert here.threads("user/ada") == ["t-1"]
    there.discard("t-1")
    assert here.owner_of("t-1") is None


def test_a_database_that_cannot_be_used_is_one_line_for_threads(monkeypatch) -> None:
    url = f"postgresql://aegis:{SECRET}@127.0.0.1:1/aegis"
    monkeypatch.setenv("AEGIS_DATABASE_URL", url)
    openers = (lambda: AgentSession("offline"), ThreadIndex, PendingIndex, lambda: thread_lock("t-1", url).__enter__())
    for open_it in openers:
        with pytest.raises(StorageError) as caught:
            open_it()
        message = str(caught.value)
        assert "\n" not in message and SECRET not in message and "postgresql://aegis@127.0.0.1:1/aegis" in message


def test_two_aegis_processes_on_one_database_act_as_two_servers(shared: str, tmp_path) -> None:
    one = aegis_env(tmp_path / "one", **PRICED)
    two = aegis_env(tmp_path / "two", **PRICED)
    paused = aegis(one, "run", REQUEST, timeout=300)
    assert paused.returncode == 3, paused.stdout + paused.stderr
    thread = next(line.split()[-1] for line in paused.stdout.splitlines() if line.startswith("thread:"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "resume", thread, "--cancel"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for env in (one, two)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    # one server carried the answer out (a cancelled job exits 1); the other was turned away (2)
    assert sorted(codes) == [1, 2], outputs
    assert "cancelled" in outputs[codes.index(1)][0]
    loser = outputs[codes.index(2)][1]
    assert "busy" in loser or "no pending approval" in loser, outputs
    assert "Traceback" not in "".join(out + err for out, err in outputs)
    again = aegis(two, "resume", thread, "--approve", timeout=120)
    assert again.returncode == 2 and "no pending approval" in again.stderr
    assert not list(tmp_path.rglob("*.sqlite"))
