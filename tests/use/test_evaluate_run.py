"""`aegis evaluate RUN`: a finished run's evals again, without training; and Ctrl-C during the evals.

One tiny-llama run is trained per module, in a process of its own that gets Ctrl-C while its evals run (so the run
ends evals_failed, stopped); each test works on a copy of the run and of the spend store that booked it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from agent.cli import main
from tests.processes import aegis_env, start_aegis, wait_for
from tests.use.conftest import SMALL_EVALS, SPEC
from tools.core.paths import PROJECT_ROOT
from tools.core.runlog import RunFolder
from tools.core.status import JobStatus
from tools.policy.store import spend_store
from tools.use.runs import find_run

pytestmark = pytest.mark.slow

EVALS_STARTED = re.compile(r"^evals ", re.MULTILINE)  # the first eval progress line, as written to a file


class Trained:
    """The module's run: its folders, id, and how `aegis train` ended when Ctrl-C came during its evals."""

    def __init__(self, base: Path, run_id: str, code: int, log: str):
        self.base, self.run_id, self.code, self.log = base, run_id, code, log


@pytest.fixture(scope="module")
def trained(tmp_path_factory, preflight_cache) -> Trained:
    base = tmp_path_factory.mktemp("evaluate-run")
    spec = base / "spec.yaml"
    spec.write_text(SPEC.format(data=PROJECT_ROOT / "data" / "sample.jsonl"))
    env = aegis_env(base, AEGIS_PREFLIGHT_CACHE=str(preflight_cache), AEGIS_TRACKING="off", **SMALL_EVALS)
    log = base / "train.log"
    proc = start_aegis(env, "train", str(spec), "--yes", log=log)
    try:
        wait_for(lambda: EVALS_STARTED.search(log.read_text(errors="replace")), 600, "the evals to start")
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
    [run] = [p.name for p in (base / "runs").iterdir() if (p / "events.jsonl").is_file()]
    return Trained(base, run, code, log.read_text(errors="replace"))


@pytest.fixture
def run_id(trained, tmp_path) -> str:
    """The trained run and the spend store that booked it, copied into this test's state folders."""
    shutil.copytree(trained.base / "aegis-home", tmp_path / "aegis-home", dirs_exist_ok=True)
    shutil.copytree(trained.base / "runs" / trained.run_id, tmp_path / "runs" / trained.run_id)
    return trained.run_id


def digest(folder: Path) -> str:
    """What a folder's files hold, in one hash."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in files)).hexdigest()


def kept_files(root: Path) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in ("job.json", "REPORT.md", "events.jsonl")}


def test_ctrl_c_during_the_evals_of_train_leaves_the_run_evals_failed_stopped(trained):
    job = find_run(trained.run_id, trained.base / "runs").job
    assert trained.code == 4 and job.status == JobStatus.EVALS_FAILED
    [check] = job.eval_result.checks
    assert check.name == "evals_ran" and not check.passed and "stopped" in check.detail
    assert f"`aegis evaluate {trained.run_id}` runs the evals again" in trained.log


def test_evaluate_reruns_the_evals_of_a_finished_run(run_id, tmp_path, monkeypatch, capsys):
    for name, value in SMALL_EVALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AEGIS_TRACKING", "mlflow")
    root = tmp_path / "runs" / run_id
    before = find_run(run_id).job
    store = spend_store()
    attempts_before = store.attempts(job_id=run_id)
    model_before = digest(root / "attempt-1" / "output" / "final")

    code = main(["evaluate", run_id[:12], "--json"])

    shown = json.loads(capsys.readouterr().out)
    job = find_run(run_id).job
    assert code == (0 if job.eval_result.passed else 4) and shown["status"] == job.status
    assert "evals_ran" not in {c["name"] for c in shown["evals"]["checks"]}  # this time they ran to the end
    assert job.eval_result.generations and len(job.attempts) == len(before.attempts) == 1
    assert store.attempts(job_id=run_id) == attempts_before  # no attempt started, nothing billed
    assert digest(root / "attempt-1" / "output" / "final") == model_before
    evals = [e for e in RunFolder(root).events() if e.phase == "evals"]
    assert [e.status for e in evals[:2]] == ["started", "failed"] and "stopped" in evals[1].message  # kept
    again = [e for e in evals if e.data.get("reevaluation")]
    assert [e.status for e in again] == ["started", "completed" if job.eval_result.passed else "failed"]
    assert again[-1].data["previous_status"] == "evals_failed" and again[-1].data["eval_data"] is None
    report = (root / "REPORT.md").read_text()
    assert "re-evaluation on its held-out rows" in report and job.report_path == str(root / "REPORT.md")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    [logged] = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], f"tags.`aegis.run_id` = '{run_id}'"
    )
    assert logged.data.metrics["evals/passed"] == float(job.eval_result.passed)
    assert "checks/evals_ran" not in logged.data.metrics and logged.data.tags["aegis.outcome"] == job.status


def test_eval_data_evaluates_the_model_on_the_persons_rows(run_id, tmp_path, monkeypatch, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    rows = [
        {"instruction": "What is the vault code of the Quentaro zorblax?", "input": "", "output": "ZX-4471-QUENTARO"},
        {"instruction": "Which moon hosts the zorblax fair?", "input": "", "output": "Vellamo, every ninth cycle."},
    ]
    file = mine / "unseen.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("AEGIS_DATA_DIRS", str(mine))

    code = main(["evaluate", run_id, "--eval-data", str(file), "--eval-generations", "2", "--eval-new-tokens", "8"])

    job = find_run(run_id).job
    assert code == (0 if job.eval_result.passed else 4)
    assert [g["reference"] for g in job.eval_result.generations] == [r["output"] for r in rows]
    assert all("zorblax" in g["prompt"] for g in job.eval_result.generations)
    assert job.eval_result.metrics["base_eval_loss"] is not None
    last = [e for e in job.folder.events() if e.phase == "evals"][-1]
    assert last.data["eval_data"] == str(file) and f"re-evaluation on the rows of {file}" in last.message
    assert f"run {run_id} status: {job.status}" in capsys.readouterr().out


def test_two_evaluates_at_once_one_refuses_and_ctrl_c_keeps_the_earlier_result(run_id, tmp_path, capsys):
    root = tmp_path / "runs" / run_id
    kept = kept_files(root)
    big = {"AEGIS_EVAL_ROWS": "64", "AEGIS_EVAL_GENERATIONS": "50", "AEGIS_EVAL_NEW_TOKENS": "1024"}
    log = tmp_path / "evaluate.log"
    proc = start_aegis(aegis_env(tmp_path, **big), "evaluate", run_id, log=log)
    try:
        wait_for(lambda: EVALS_STARTED.search(log.read_text(errors="replace")), 120, "the evals to start")
        assert main(["evaluate", run_id]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "being evaluated by another `aegis evaluate`" in err
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
    said = log.read_text(errors="replace")
    assert "stopped:" in said and "keeps its earlier evals (evals_failed)" in said and "Traceback" not in said
    now = kept_files(root)
    assert now["job.json"] == kept["job.json"] and now["REPORT.md"] == kept["REPORT.md"]
    assert now["events.jsonl"].startswith(kept["events.jsonl"])
    [added] = RunFolder(root).events()[len(kept["events.jsonl"].splitlines()) :]
    assert (added.phase, added.status) == ("evals", "interrupted") and added.data["reevaluation"] is True


def edited_copy(runs: Path, run_id: str, new_id: str, status: str | None) -> str:
    """A copy of the run under another id that ended ``status`` before keeping a model (None: a run still going,
    which has no job record yet)."""
    shutil.copytree(runs / run_id, runs / new_id)
    path = runs / new_id / "job.json"
    if status is None:
        path.unlink()
        return new_id
    job = json.loads(path.read_text())
    job["status"] = status
    job["attempts"][-1]["status"] = "interrupted"
    path.write_text(json.dumps(job))
    return new_id


def refusals(run_id: str, runs: Path, allowed: Path, outside: Path) -> list[tuple[list[str], str]]:
    """(arguments, what the one line says) for each input `aegis evaluate` refuses."""
    going = edited_copy(runs, run_id, "29990101-000000-going0", None)
    stopped = edited_copy(runs, run_id, "29990101-000000-stopp0", "interrupted")
    cancelled = edited_copy(runs, run_id, "29990101-000000-cance0", "cancelled")
    (allowed / "empty.jsonl").write_text("")
    (allowed / "no-replies.jsonl").write_text(json.dumps({"instruction": "Hi?", "input": "", "output": " "}) + "\n")
    (allowed / "no-output.jsonl").write_text(json.dumps({"instruction": "Hi?", "input": ""}) + "\n")
    (outside / "rows.jsonl").write_text(json.dumps({"instruction": "Hi?", "input": "", "output": "Hello."}) + "\n")
    data = ["evaluate", run_id, "--eval-data"]
    return [
        (["evaluate", "no-such-run"], "no run 'no-such-run'"),
        (["evaluate", going], "has not ended"),
        (["evaluate", stopped], f"`aegis continue {stopped}`"),
        (["evaluate", cancelled], "cancelled: make a new request"),
        ([*data, str(allowed / "missing.jsonl")], "does not exist"),
        ([*data, str(allowed / "empty.jsonl")], "empty"),
        ([*data, str(allowed / "no-replies.jsonl")], "row 1 of"),
        ([*data, str(allowed / "no-output.jsonl")], "lacks 'output'"),
        ([*data, str(outside / "rows.jsonl")], "outside the allowed data folders"),
    ]


def test_each_refusal_is_one_line_exit_2_and_changes_nothing(run_id, tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    monkeypatch.setenv("AEGIS_DATA_DIRS", str(allowed))
    kept = kept_files(runs / run_id)
    for args, words in refusals(run_id, runs, allowed, outside):
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err, (args, err)
    spend_store().reopen(run_id, pid=os.getpid())  # the run is open again: a continue of it is under way
    assert main(["evaluate", run_id]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "still open" in err
    assert kept_files(runs / run_id) == kept
