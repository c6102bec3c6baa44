"""A run whose training succeeded but whose evals failed is its own outcome, with its own words and exit code; the
evals report their progress phase by phase."""

from __future__ import annotations

import io

import psutil
import pytest
from rich.console import Console

from agent.cli.options import EXIT_EVALS_FAILED
from agent.cli.output import TrainingProgress, job_exit_code, say_evals_failed
from agent.ui.views import progress_text
from tools.core.status import JobStatus
from tools.evals.progress import EVAL_EVENT, EvalProgress, EvalStopped
from tools.evals.thresholds import EvalThresholds
from tools.job.healing import evaluate_job
from tools.use.runs import find_run

QUICK = {"leak_probe": False, "n_generations": 1, "max_new_tokens": 4, "max_heldout_rows": 2}


def finished_job(run_id, tmp_path):
    job = find_run(run_id).job
    return job.model_copy(update={"run_dir": str(tmp_path / "runs" / run_id)})


def test_failed_evals_keep_the_trained_model_and_say_so(run_id, tmp_path, capsys):
    events: list[dict] = []
    impossible = EvalThresholds(max_final_loss=0.001, **QUICK)
    job = evaluate_job(finished_job(run_id, tmp_path), impossible, on_progress=events.append)
    assert job.status == JobStatus.EVALS_FAILED and job_exit_code(job) == EXIT_EVALS_FAILED == 4
    last = job.folder.events()[-1]
    assert last.phase == "evals" and last.status == "failed"
    assert last.message.startswith("trained, but the evals failed: failed checks:") and "loss" in last.message
    say_evals_failed(job)
    err = capsys.readouterr().err
    assert "trained, but the evals failed" in err and f"aegis generate {run_id}" in err
    phases = [e["phase"] for e in events if e["done"] == e["total"]]
    assert phases == ["load", "heldout_trained", "heldout_base", "generate", "general"]
    assert all(e["type"] == EVAL_EVENT for e in events) and job.eval_result.metrics["eval_seconds"] > 0


def test_evals_that_cannot_run_are_a_reason_not_a_traceback(run_id, tmp_path):
    job = finished_job(run_id, tmp_path)
    job.attempts[-1].output_dir = str(tmp_path / "missing-output")  # the model folder is gone
    job = evaluate_job(job, EvalThresholds(**QUICK))
    assert job.status == JobStatus.EVALS_FAILED
    [check] = job.eval_result.checks
    assert check.name == "evals_ran" and not check.passed and "could not run" in check.detail


def test_a_stop_asked_for_while_the_eval_worker_runs_ends_it(run_id, tmp_path):
    events: list[dict] = []
    job = evaluate_job(
        finished_job(run_id, tmp_path),
        EvalThresholds(**QUICK),
        on_progress=events.append,
        should_stop=lambda: bool(events),
    )
    [check] = job.eval_result.checks
    assert check.name == "evals_ran" and "stopped during the loading" in check.detail
    assert events and events[0]["phase"] == "load"
    workers = [p for p in psutil.Process().children(recursive=True) if "tools.evals.worker" in " ".join(p.cmdline())]
    assert not workers  # its whole group was killed


def test_a_stop_during_the_evals_ends_them():
    progress = EvalProgress(should_stop=lambda: True)
    with pytest.raises(EvalStopped), progress.phase("generate", 3) as tick:
        tick()
    assert "eval_seconds_generate" in progress.timing_metrics()  # the time until the stop is kept


def test_eval_progress_is_drawn_in_the_terminal_and_the_page():
    seen: list[dict] = []
    progress = EvalProgress(seen.append)
    with progress.phase("heldout_base", 2) as tick:
        tick()
        tick()
    assert [(e["done"], e["total"]) for e in seen] == [(0, 2), (1, 2), (2, 2)]
    bars = TrainingProgress(Console(file=io.StringIO(), force_terminal=True))  # a terminal: Rich's bars
    with bars:
        for event in seen:
            bars.update(event)
    task = bars.progress.tasks[0]
    assert task.completed == 2 and "held-out loss, base model" in task.description
    assert "held-out loss, base model 2/2" in progress_text({**seen[-1], "run_id": "r1"})


def test_the_report_says_the_model_was_kept():
    from tools.report.report import outcome_words

    assert outcome_words("evals_failed") == "evals_failed: trained (the model is kept), but the evals failed"
    assert outcome_words("succeeded") == "succeeded"


def test_the_person_chooses_how_big_the_evals_are(monkeypatch, tmp_path):
    from agent.cli import build_parser
    from agent.cli.options import EVAL_FLAGS, apply_eval_flags

    for variable in EVAL_FLAGS.values():
        monkeypatch.setenv(variable, "8")  # restored after the test, whatever the flags set
        monkeypatch.delenv(variable)
    assert EvalThresholds.from_config().max_heldout_rows == 64
    args = build_parser().parse_args(
        ["train", "spec.yaml", "--eval-rows", "12", "--eval-generations", "2", "--eval-new-tokens", "32"]
    )
    apply_eval_flags(args)
    t = EvalThresholds.from_config()
    assert (t.max_heldout_rows, t.n_generations, t.max_new_tokens) == (12, 2, 32)
