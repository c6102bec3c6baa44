"""A trained model that ships hostile code is evaluated, talked to and exported in the sandbox, and gets nowhere.

The run is the session's trained tiny run pointed at a copy of its base model with code of its own
(tests.stand_ins.hostile_model, trust_remote_code: true): at import and in forward that code tries to read
tmp_path/secret-token, write tmp_path/escaped and connect to a socket the test listens on, and logs what it saw
in its working folder (the worker's own, read here while the worker runs). Without bubblewrap, such a model is
refused before anything of it starts.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from agent.cli import main
from tests.stand_ins import Hostile, Listener, attack_log, hostile_model
from tools.core.errors import AegisError
from tools.core.isolation import Isolation
from tools.evals.model_evals import run_evals
from tools.evals.thresholds import EvalThresholds
from tools.inputs.local_models import resolve_model
from tools.job.healing import evaluate_job
from tools.job.state import JobState
from tools.use.generate import open_model
from tools.use.protocol import GenerationSettings
from tools.use.runs import find_run

pytestmark = pytest.mark.slow  # the session's trained run, and a worker that loads the model each time

QUICK = {"leak_probe": False, "n_generations": 1, "max_new_tokens": 4, "max_heldout_rows": 2}
QUESTION = "My printer on floor 3 is offline. What should I do?"


@pytest.fixture
def hostile(run_id, tmp_path, listener) -> Hostile:
    """The trained run, its spec now naming the hostile copy of its base model with trust_remote_code: true."""
    model = hostile_model(tmp_path, listener.port)
    path = tmp_path / "runs" / run_id / "job.json"
    job = json.loads(path.read_text(encoding="utf-8"))
    job["spec"] |= {"model_name": str(model.folder), "trust_remote_code": True}
    job["run_dir"] = str(path.parent)
    path.write_text(json.dumps(job), encoding="utf-8")
    return model


@pytest.fixture
def worker_folders(tmp_path, monkeypatch) -> Path:
    """Where the workers' temporary folders are made (and the hostile code's attack.log with them)."""
    folder = tmp_path / "worker-folders"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def the_job(run_id: str) -> JobState:
    job = find_run(run_id).job
    assert job is not None and job.spec is not None and job.spec.trust_remote_code
    return job


def got_nowhere(model: Hostile, listener: Listener, seen: list[dict], where: set[str]) -> None:
    """The code ran (``where``: at import, in forward) and every attack failed: nothing outside saw it either."""
    assert where <= {next(iter(entry)) for entry in seen}
    for entry in seen:
        attempt = next(iter(entry.values()))
        assert attempt["read"].startswith("failed") and attempt["connect"].startswith("failed")
    assert not model.escaped.exists() and listener.connections == 0


def test_the_evals_of_a_hostile_model_complete_in_the_sandbox(run_id, hostile, listener, worker_folders):
    seen: list[dict] = []
    events: list[dict] = []

    def watch(event: dict) -> None:
        events.append(event)
        seen[:] = attack_log(worker_folders) or seen  # the worker's folder goes when it ends

    job = evaluate_job(the_job(run_id), EvalThresholds(**QUICK), on_progress=watch)
    result = job.eval_result
    assert result is not None and "evals_ran" not in {c.name for c in result.checks}, result.checks
    assert result.generations and result.metrics["eval_loss"] is not None
    assert [e["phase"] for e in events if e["done"] == e["total"]] == [
        "load",
        "heldout_trained",
        "heldout_base",
        "generate",
        "general",
    ]
    last = job.folder.events()[-1]
    assert last.phase == "evals" and last.data["isolation"] == Isolation.BUBBLEWRAP
    got_nowhere(hostile, listener, seen, {"import", "forward"})
    assert not list(worker_folders.iterdir())  # the worker's folder is removed with it


def test_generate_and_chat_with_a_hostile_model_run_in_the_sandbox(run_id, hostile, listener, capsys):
    assert main(["generate", run_id, QUESTION, "--max-new-tokens", "8", "--base"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() and "isolation: bubblewrap" in captured.err
    assert "fine-tuned:" in captured.err and "base model:" in captured.err

    with open_model(find_run(run_id)) as worker:
        assert worker.isolation.kind is Isolation.BUBBLEWRAP
        settings = GenerationSettings(max_new_tokens=8)
        first = worker.answer([{"role": "user", "content": QUESTION}], settings)
        tokens: list[str] = []
        again = worker.answer([{"role": "user", "content": QUESTION}], settings, on_token=tokens.append)
        seen = attack_log(Path(worker.scratch.name))
    assert first.tuned and first == again and "".join(tokens).strip() == again.tuned  # one worker, many turns
    with pytest.raises(AegisError, match="ends with the person's message"):
        with open_model(find_run(run_id)) as worker:
            worker.answer([{"role": "assistant", "content": "hi"}])
    got_nowhere(hostile, listener, seen, {"import", "forward"})


def test_export_merge_of_a_hostile_model_runs_in_the_sandbox(run_id, hostile, listener, tmp_path, capsys):
    out = tmp_path / "shipped"
    assert main(["export", run_id, "--merge", "--out", str(out)]) == 0
    assert "isolation: bubblewrap" in capsys.readouterr().err
    assert (out / "model.safetensors").is_file() and (out / "adapter" / "adapter_config.json").is_file()
    assert not (out / ".home").exists()
    got_nowhere(hostile, listener, attack_log(out), {"import"})  # its log is in the one folder it may write


def test_without_bubblewrap_a_hostile_model_is_refused_before_any_of_it_runs(
    run_id, hostile, listener, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("AEGIS_BWRAP", "/nonexistent/bwrap")  # an uncached path: bubblewrap is not found
    job = the_job(run_id)
    with pytest.raises(AegisError, match="isolation: none"):
        run_evals(
            job.spec,
            job.attempts[-1],
            base_model_path=str(hostile.folder),
            train_records=[],
            thresholds=EvalThresholds(**QUICK),
        )
    job = evaluate_job(job, EvalThresholds(**QUICK))
    [check] = job.eval_result.checks
    assert check.name == "evals_ran" and "trust_remote_code" in check.detail and "isolation: none" in check.detail
    assert job.folder.events()[-1].data["isolation"] is None  # no worker started
    for argv in (["generate", run_id, QUESTION], ["chat-model", run_id], ["export", run_id, "--merge"]):
        assert main(argv) == 2
        assert "isolation: none" in capsys.readouterr().err
    assert not (tmp_path / "runs" / run_id / "export-merged").exists()
    assert not hostile.escaped.exists() and listener.connections == 0  # nothing of the model ran


def test_a_run_reached_through_a_link_is_found_inside_the_sandbox(run_id, tmp_path, monkeypatch, capsys):
    # The sandbox binds the real folders: a worker handed the linked path would find nothing there.
    link = tmp_path / "linked-runs"
    link.symlink_to(tmp_path / "runs")
    monkeypatch.setenv("AEGIS_RUNS_DIR", str(link))
    assert main(["generate", run_id, QUESTION, "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.strip()
    job = find_run(run_id).job
    attempt = job.attempts[-1].model_copy(update={"output_dir": str(link / run_id / "attempt-1" / "output")})
    base = resolve_model(job.spec.model_name).path
    result = run_evals(job.spec, attempt, base_model_path=base, train_records=[], thresholds=EvalThresholds(**QUICK))
    assert result.generations and "evals_ran" not in {c.name for c in result.checks}
