"""What the replies say, on real tiny models trained for real and measured by the real sandboxed eval worker:
a model that answers "..." or one word over and over fails; one that learned its task but answers general
questions in the task's format is warned about forgetting; checks a spec declares run and gate the job.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from tests.evals.test_model_evals import base_model, by_name, make_run, ticket_rows  # noqa: F401 (fixture)
from tools.evals.examples import read_records
from tools.evals.model_evals import GENERAL_SET, run_evals
from tools.evals.thresholds import EvalThresholds
from tools.use.runs import find_run

ROOT = Path(__file__).resolve().parents[2]
REPLIES = EvalThresholds(leak_probe=False, n_generations=4, max_new_tokens=16, forgetting_check=False)


def collapsed(base: Path, tmp: Path, reply: str):
    """A full fine-tune hammered on ticket prompts whose every reply is ``reply``."""
    rows = [{"prompt": r["prompt"], "completion": reply} for r in ticket_rows(20, 3)]
    heldout = ticket_rows(4, 2)
    return make_run(tmp, base, rows, heldout, steps=60, lr=3e-3, lora=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("reply", "reason"), [("...", "only punctuation or symbols"), ("SENDBUCKET", "one word repeated")]
)
def test_a_model_that_answers_dots_or_one_word_fails_the_evals(base_model, tmp_path, reply, reason):  # noqa: F811
    spec, result, dataset = collapsed(base_model, tmp_path, f"{reply} {reply} {reply}" if reply.isalpha() else reply)
    evals = run_evals(
        spec, result, base_model_path=str(base_model), train_records=read_records(dataset), thresholds=REPLIES
    )
    checks = by_name(evals)
    assert not evals.passed
    replies = [g["trained"] for g in evals.generations]
    assert not checks["degenerate_output"].passed and checks["degenerate_output"].value == 1.0, replies
    assert reason in checks["degenerate_output"].detail
    assert all(reason in g["degenerate"]["trained"] for g in evals.generations)
    assert not checks["task_score"].passed and evals.metrics["degenerate_share"] == 1.0
    assert "heldout_loss_improved" in checks  # the loss checks still ran beside them


@pytest.fixture(scope="module")
def knowing_base(base_model, tmp_path_factory):  # noqa: F811
    """The tiny base, first taught the bundled general questions (so it has something to forget)."""
    general = [json.loads(line) for line in GENERAL_SET.read_text(encoding="utf-8").splitlines()]
    rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in general]
    tmp = tmp_path_factory.mktemp("knowing")
    make_run(tmp, base_model, rows, rows[:2], steps=200, lr=3e-3, lora=False)
    return tmp / "final"


@pytest.mark.slow
def test_a_model_that_answers_everything_in_its_task_format_gets_the_forgetting_warning(knowing_base, tmp_path):
    spec, result, dataset = make_run(
        tmp_path, knowing_base, ticket_rows(60, 1), ticket_rows(6, 2), steps=80, lr=6e-3, lora=True
    )
    t = EvalThresholds(leak_probe=False, n_generations=4, max_new_tokens=40, forgetting_new_tokens=40)
    evals = run_evals(
        spec, result, base_model_path=str(knowing_base), train_records=read_records(dataset), thresholds=t
    )
    checks = by_name(evals)
    m = evals.metrics
    assert checks["task_score"].passed and m["task_rouge_l"] > m["task_rouge_l_base"]
    forgetting = checks["forgetting"]
    assert forgetting.severity == "warning" and not forgetting.passed, forgetting.detail
    assert m["forgetting_score_base"] >= 0.5 and m["forgetting_drop"] > t.max_forgetting_drop
    answers = [g["trained"] for g in evals.general]
    assert len(answers) == 16 and sum("Ticket" in a or "Support" in a for a in answers) >= 12, answers
    gates = [c for c in evals.checks if c.severity == "gate"]
    assert evals.passed == all(c.passed for c in gates)  # the warning alone never fails a run


SPEC = """method: lora
model_name: local:tiny-llama
dataset_path: {data}
dataset_format: instruction
num_epochs: 1
max_steps: 6
micro_batch_size: 4
learning_rate: 1.0e-2
seq_len: 128
eval_split: 0.1
seed: 42
target_gpu: cpu
evals:
  - name: says_something
    kind: regex
    pattern: '\\w'
  - name: json_reply
    kind: json_schema
    json_schema: {{type: object, required: [answer]}}
"""


@pytest.mark.slow
def test_checks_declared_in_the_spec_run_and_gate_the_job(tmp_path, monkeypatch):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(data=ROOT / "data" / "sample.jsonl"), encoding="utf-8")
    # This test is about the declared checks: a 6-step tiny model's task score against its base is left out.
    config = tmp_path / "evals.yaml"
    config.write_text("min_task_score_gain: null\nleak_probe: false\nforgetting_check: false\n", encoding="utf-8")
    monkeypatch.setenv("AEGIS_EVAL_CONFIG", str(config))
    for name, value in {"AEGIS_EVAL_ROWS": "8", "AEGIS_EVAL_GENERATIONS": "2", "AEGIS_EVAL_NEW_TOKENS": "16"}.items():
        monkeypatch.setenv(name, value)
    assert main(["train", str(spec), "--yes"]) == 4  # trained, but the evals failed
    job = find_run("latest").job
    checks = by_name(job.eval_result)
    assert job.status == "evals_failed"
    assert checks["custom:says_something"].passed and checks["custom:says_something"].value == 1.0
    assert not checks["custom:json_reply"].passed and checks["custom:json_reply"].value == 0.0
    assert [c.name for c in job.eval_result.checks if not c.passed] == ["custom:json_reply"]
    report = job.folder.report_path.read_text(encoding="utf-8")
    assert "custom:json_reply" in report
