"""The issue-19 Must-show items, checked on the run `make demo` left behind (slow; skipped when there is none).

Run after `make demo`:  .venv/bin/pytest -q -m slow tests/use/test_demo_run.py
(AEGIS_DEMO_RUNS_DIR names another runs folder; the default is ./runs, where the demo writes.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.cli import main
from tools.core.paths import PROJECT_ROOT
from tools.core.runlog import read_lines
from tools.evals.formats import format_signature
from tools.inputs.local_models import resolve_model
from tools.report.tracking import RUN_TAG
from tools.use.model_worker import generate_reply, load_model
from tools.use.protocol import GenerationSettings, LoadRequest
from tools.use.runs import RunRecord, list_runs

DEMO_MODEL = "local:smollm2-135m-instruct"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EVAL_FILE = PROJECT_ROOT / "data" / "support_eval.jsonl"
pytestmark = pytest.mark.slow


@pytest.fixture
def demo(monkeypatch) -> RunRecord:
    runs = Path(os.environ.get("AEGIS_DEMO_RUNS_DIR") or PROJECT_ROOT / "runs")
    monkeypatch.setenv("AEGIS_RUNS_DIR", str(runs))
    found = [r for r in list_runs(runs) if r.model == DEMO_MODEL and r.has_model] if runs.is_dir() else []
    if not found:
        pytest.skip(f"no demo run with a trained model in {runs}: run `make demo` first")
    return RunRecord(runs / found[0].run_id)


def heldout() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in EVAL_FILE.read_text().splitlines() if line.strip()]
    return [(r["messages"][0]["content"], r["messages"][-1]["content"]) for r in rows]


def test_generate_answers_a_heldout_question_in_the_taught_format(demo, capsys):
    pairs = heldout()
    signature = format_signature([reference for _, reference in pairs])
    assert signature.elements, signature
    scores = []
    for question, _ in pairs[:3]:
        assert main(["generate", demo.run_id, question]) == 0
        answer = capsys.readouterr().out.strip()
        scores.append(signature.score(answer))
        with capsys.disabled():
            print(f"\nQ: {question}\nA: {answer}\nformat score: {scores[-1]:.2f}")
    assert max(scores) == 1.0, scores


def test_export_merge_matches_the_adapter_and_the_card_names_base_and_data(demo, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path / "export"
    assert main(["export", demo.run_id, "--merge", "--out", str(out)]) == 0
    merged = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    assert not hasattr(merged, "peft_config")
    base = resolve_model(demo.require_spec().model_name).path
    tuned = load_model(LoadRequest(final_dir=str(demo.final_dir()), base_path=base))
    settings = GenerationSettings(max_new_tokens=60)
    for question, _ in heldout()[:2]:
        messages = [{"role": "user", "content": question}]
        assert generate_reply(merged, tuned.tokenizer, messages, settings) == generate_reply(
            tuned.trained, tuned.tokenizer, messages, settings
        )
    card = (out / "README.md").read_text()
    assert f"base_model: {HUB_ID}" in card and demo.job.data_digest in card
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == HUB_ID


def test_runs_lists_the_demo_and_compare_works(demo, capsys):
    assert main(["runs", "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out) if r["run_id"] == demo.run_id)
    print(f"\n{row}")
    assert row["loss_before"] and row["loss_after"] and row["loss_after"] < row["loss_before"]
    assert row["cost_usd"] >= 0 and row["outcome"] == "succeeded"
    others = [r.run_id for r in list_runs() if r.run_id != demo.run_id]
    assert main(["runs", "compare", demo.run_id, others[0] if others else demo.run_id]) == 0
    assert "held-out loss" in capsys.readouterr().out


def test_the_demo_is_in_mlflow_per_step(demo):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{demo.folder.root.parent / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("aegis-ml")
    [run] = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{demo.run_id}'")
    n, _ = demo.trained_attempt()
    steps = [json.loads(x) for x in read_lines(demo.folder.root / f"attempt-{n}" / "metrics.jsonl")]
    steps = [s for s in steps if s.get("type") == "step"]
    prefix = "" if n == 1 else f"attempt{n}/"
    history = client.get_metric_history(run.info.run_id, prefix + "train/loss")
    assert len(history) == len(steps) > 1
    assert [m.step for m in history] == [s["step"] for s in steps]


def test_the_demos_evals_took_less_time_than_its_training(demo):
    summary = demo.summary()
    print(f"\ntraining {summary.train_seconds:.0f} s, evals {summary.eval_seconds:.0f} s")
    assert summary.eval_seconds is not None and summary.eval_seconds < summary.train_seconds


def test_the_demos_report_shows_the_task_score_and_the_forgetting_check(demo):
    """Did it learn the task better than the base, and did it forget what the base knew: both in the report."""
    metrics = demo.job.eval_result.metrics
    report = demo.folder.report_path.read_text(encoding="utf-8")
    print(
        f"\ntask ROUGE-L {metrics['task_rouge_l_base']:.3f} → {metrics['task_rouge_l']:.3f}; general questions "
        f"{metrics['forgetting_score_base']:.0%} → {metrics['forgetting_score']:.0%}"
    )
    assert metrics["task_rouge_l"] > metrics["task_rouge_l_base"]
    assert "| Task score (ROUGE-L, base → fine-tuned) |" in report and "| Forgetting check" in report
    assert "### General questions (forgetting check)" in report
