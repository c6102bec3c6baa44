"""REPORT.md for a realistic run: every section, cells that cannot break their tables, a real PNG loss curve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tools.core.runlog import RunFolder
from tools.core.spec import (
    BudgetPolicy,
    CostBreakdown,
    CostEstimate,
    EvalCheck,
    EvalResult,
    ExecutionResult,
    RunEvent,
    TrainingSpec,
)
from tools.plan.remediation import Remediation, plan_remediation
from tools.report.report import md_cell, plot_loss_curve, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTIONS = [
    "## Executive Summary",
    "## Training Specification",
    "## Cost Gate Decision",
    "## Estimated vs Actual",
    "## Loss Curve",
    "## Evaluation",
    "## Failures and Remediations",
    "## Event Timeline",
]


def estimate() -> CostEstimate:
    breakdown = CostBreakdown(
        gpu="a10g",
        gpu_price_usd_per_sec=0.000306,
        gpu_memory_gb=24,
        estimated_seconds=540.0,
        effective_batch_size=8,
        total_steps=120,
        dataset_rows=330,
        train_rows=300,
        dataset_tokens=96_000,
        train_tokens_per_epoch=87_000,
        tokenizer="HuggingFaceTB/SmolLM2-135M-Instruct",
        total_params=134_515_008,
        trainable_params=921_600,
        flops=2.1e14,
        tflops_effective=21.0,
        utilisation=0.3,
        weights_gb=0.27,
        gradients_gb=0.002,
        optimizer_gb=0.011,
        activations_gb=1.9,
        overhead_gb=1.0,
        fits=True,
        dtype="bf16",
        notes=["packing removes padding"],
    )
    return CostEstimate(
        estimated_cost_usd=0.1652, estimated_vram_gb=3.18, estimated_duration_min=9.0, cost_breakdown=breakdown
    )


def attempts() -> list[ExecutionResult]:
    oom = ExecutionResult(
        status="failed",
        failure_class="oom",
        exit_code=1,
        executor="modal",
        gpu="a10g",
        error_message="torch.OutOfMemoryError: CUDA out of memory | tried 2.00 GiB\n```inject```",
        loss_curve=[(1, 2.91), (2, 2.85), (3, 2.80)],
        initial_train_loss=2.91,
        steps_completed=3,
        total_steps=120,
        duration_s=41.0,
        actual_cost_usd=0.0125,
        peak_memory_mb=23_900,
    )
    curve = [(s, 2.9 * 0.985**s + 0.6) for s in range(1, 121)]
    ok = ExecutionResult(
        status="succeeded",
        executor="modal",
        gpu="a10g",
        loss_curve=curve,
        initial_train_loss=curve[0][1],
        final_train_loss=curve[-1][1],
        initial_eval_loss=2.95,
        final_eval_loss=1.41,
        steps_completed=120,
        total_steps=120,
        train_tokens=87_000,
        duration_s=498.0,
        tokens_per_s=174.7,
        peak_memory_mb=12_800,
        actual_cost_usd=0.1524,
    )
    return [oom, ok]


def eval_result() -> EvalResult:
    checks = [
        EvalCheck(name="loss_improved", passed=True, value=0.62, threshold=0.05, detail="train loss 3.50 → 1.33"),
        EvalCheck(name="overfitting_gap", passed=False, value=1.7, threshold=1.0, detail="held-out | train\ngap"),
    ]
    generations = [
        {
            "prompt": "<|user|>\nPrinter | offline\n<|assistant|>\n",
            "reference": "Ticket NW-1: printer\nFix: restart",
            "base": "I am a | helpful\nassistant",
            "trained": "Ticket NW-2: printer\nFix: restart",
            "format_ok_base": False,
            "format_ok": True,
        }
    ]
    metrics = {
        "base_eval_loss": 2.95,
        "eval_loss": 1.41,
        "base_perplexity": 19.1,
        "perplexity": 4.1,
        "format_signature_elements": 2.0,
        "format_pass_rate_base": 0.0,
        "format_pass_rate": 0.8,
        "repetition_base": 0.31,
        "repetition": 0.02,
    }
    return EvalResult(passed=False, checks=checks, metrics=metrics, generations=generations)


def events() -> list[RunEvent]:
    t0 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
    return [
        RunEvent(timestamp=t0, phase="estimate", status="completed", message="$0.17 | 3.2 GB"),
        RunEvent(timestamp=t0 + timedelta(seconds=5), phase="gate", status="completed", message="auto-approved"),
        RunEvent(timestamp=t0 + timedelta(seconds=60), phase="train", status="failed", message="OOM\nat step 3"),
        RunEvent(timestamp=t0 + timedelta(seconds=61), phase="remediate", status="completed", message="halved"),
    ]


def unescaped_pipes(line: str) -> int:
    count, i = 0, 0
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        count += line[i] == "|"
        i += 1
    return count


@pytest.fixture
def report(tmp_path):
    spec = TrainingSpec(
        model_name="HuggingFaceTB/SmolLM2-135M-Instruct", dataset_path="data/tickets.jsonl", micro_batch_size=8
    )
    plan = plan_remediation(spec, "oom", retry_count=0, max_retries=3)
    run = RunFolder.create("run-test", base=tmp_path)
    path = write_report(
        run,
        spec=plan.new_spec,
        policy=BudgetPolicy(),
        estimate=estimate(),
        gate={
            "outcome": "approved",
            "reason": "at or below the soft threshold",
            "decision": "approve",
            "decided_by": "auto (policy)",
            "approved_usd": 0.1652,
        },
        attempts=attempts(),
        remediations=[
            Remediation(
                attempt=1,
                failure="oom",
                rule=plan.rule,
                changes={k: list(v) for k, v in plan.changes.items()},
                explanation=plan.explanation,
            )
        ],
        eval_result=eval_result(),
        events=events(),
        outcome="completed (evals failed)",
    )
    return run, path, path.read_text(encoding="utf-8")


def test_report_has_every_section_in_order(report):
    run, path, text = report
    assert path == run.report_path
    assert text.startswith("# Aegis-ML run report — run-test\n")
    positions = [text.index(s) for s in SECTIONS]
    assert positions == sorted(positions)
    assert "| Metric | Value |" in text and "| Time | Phase | Status | Message |" in text
    assert '"micro_batch_size": 4' in text  # the spec block is the healed spec's JSON
    for expected in [
        "| Outcome | completed (evals failed) |",
        "| Attempts | 2 (failed, succeeded) |",
        "| Eval loss (before → after) | 2.9500 → 1.4100 |",
        "| Gate decision | approve by auto (policy) |",
        "| Estimated vs actual cost | $0.17 vs $0.16 |",
        "| Hard limit (max_budget_usd) | $5.00 |",
        "| Soft threshold (auto-approve at or below) | $2.00 |",
        "| Decided by | auto (policy) |",
        "| Peak memory | 3.18 GB (VRAM estimate) | 25.06 GB |",  # 23,900 MiB in the estimate's GB (1e9 bytes)
        "| Format pass rate | 0% | 80% |",
        "| overfitting_gap | **FAIL** | 1.7 | 1.0 |",
        "### Attempt 1: failed (oom)",
        "| micro_batch_size | 8 | 4 |",
        "| gradient_accumulation_steps | 1 | 2 |",
        "![Training loss per step](loss_curve.png)",
        "| 2026-11-03 09:01:00 UTC | train | failed |",
    ]:
        assert expected in text, expected


def test_cells_are_escaped_and_tables_stay_rectangular(report):
    _, _, text = report
    assert "held-out \\| train<br>gap" in text
    assert "&lt;\\|user\\|&gt;<br>Printer \\| offline" in text
    assert "| OOM<br>at step 3 |" in text and "$0.17 \\| 3.2 GB" in text
    assert "```inject```" not in text and "'''inject'''" in text  # an error message cannot close its fence
    table: list[str] = []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            widths = {unescaped_pipes(row) for row in table}
            assert len(widths) == 1, table
            table = []


def test_loss_curve_png_is_valid(report):
    from matplotlib.image import imread

    run, _, _ = report
    data = run.loss_curve_path.read_bytes()
    assert data.startswith(PNG_MAGIC) and b"IEND" in data[-16:]
    pixels = imread(run.loss_curve_path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100


def test_no_curve_and_no_evals(tmp_path):
    assert plot_loss_curve([ExecutionResult(status="failed", failure_class="bad_data")], tmp_path / "x.png") is None
    run = RunFolder.create("bare", base=tmp_path)
    spec = TrainingSpec(model_name="tiny", dataset_path="d.jsonl")
    text = write_report(
        run,
        spec=spec,
        policy=BudgetPolicy(),
        estimate=None,
        gate={"outcome": "refused", "reason": "over the hard limit"},
        attempts=[],
        remediations=[],
        eval_result=None,
        events=[],
        outcome="refused",
    ).read_text(encoding="utf-8")
    assert all(s in text for s in SECTIONS)
    assert "No training attempt was started." in text and "The evaluation did not run." in text
    assert "No loss was recorded." in text and not run.loss_curve_path.exists()
    assert "| Gate decision | refused by — |" in text


def test_md_cell():
    assert md_cell(None) == "—"
    assert md_cell("a|b\r\nc") == "a\\|b<br>c"
    assert md_cell("a\\|b") == "a\\\\\\|b"
    assert md_cell("x\x13y") == "x\\x13y"
    assert md_cell("z" * 500).endswith("…") and len(md_cell("z" * 500)) == 401


def scored_result() -> EvalResult:
    """Evals with task scores, a degenerate base reply, the forgetting set and a declared check."""
    base = eval_result()
    row = base.generations[0] | {
        "scores": {
            "base": {"exact": 0, "contains": 0, "rouge_l": 0.0},
            "trained": {"exact": 0, "contains": 0, "rouge_l": 0.8},
        },
        "degenerate": {"base": "only punctuation or symbols", "trained": None},
        "custom": {"ticket_id": True},
    }
    general = [
        {
            "prompt": "What is the capital of France?",
            "reference": "The capital of France is Paris.",
            "answers": ["Paris"],
            "base": "Paris.",
            "trained": "Ticket NW-9144: City of Paris",
            "scores": {
                "base": {"score": 1.0, "contains": 1, "task_format": False, "degenerate": None, "rouge_l": 0.3},
                "trained": {"score": 0.0, "contains": 1, "task_format": True, "degenerate": None, "rouge_l": 0.2},
            },
        }
    ]
    checks = [
        EvalCheck(name="task_score", passed=True, value=0.8, threshold=0.0, detail="ROUGE-L base 0.000 → 0.800"),
        EvalCheck(name="custom:ticket_id", passed=True, value=1.0, threshold=1.0, detail="regex"),
        EvalCheck(name="forgetting", passed=False, severity="warning", value=1.0, threshold=0.2, detail="drop 100%"),
    ]
    metrics = base.metrics | {
        "task_rouge_l_base": 0.0,
        "task_rouge_l": 0.8,
        "task_contains_base": 0.0,
        "task_contains": 0.0,
        "task_exact_base": 0.0,
        "task_exact": 0.0,
        "degenerate_share_base": 1.0,
        "degenerate_share": 0.0,
        "forgetting_score_base": 1.0,
        "forgetting_score": 0.0,
        "forgetting_drop": 1.0,
    }
    return EvalResult(passed=True, checks=checks, metrics=metrics, generations=[row], general=general)


def test_task_scores_forgetting_and_warnings_in_the_report(tmp_path):
    spec = TrainingSpec(model_name="local:tiny-llama", dataset_path="data/sample.jsonl", target_gpu="cpu")
    run = RunFolder.create("run-scored", base=tmp_path)
    text = write_report(
        run,
        spec=spec,
        policy=BudgetPolicy(),
        estimate=None,
        gate={},
        attempts=attempts()[1:],
        remediations=[],
        eval_result=scored_result(),
        events=[],
        outcome="succeeded",
    ).read_text(encoding="utf-8")
    for expected in [
        "| Evaluation | passed (2/2 checks; 1 warning) |",
        "| Task score (ROUGE-L, base → fine-tuned) | 0.000 → 0.800 |",
        "| Forgetting check (general questions) | 100% → 0% (warning) |",
        "Overall: **PASSED** (2/2 gate checks passed; 1 warning: forgetting).",
        "| forgetting | warning | 1.0 | 0.2 | drop 100% |",
        "| Task score: ROUGE-L F1 vs reference | 0.000 | 0.800 |",
        "| Degenerate replies | 100% | 0% |",
        "| General questions (forgetting check) | 100% | 0% |",
        "(format ✗) (ROUGE-L 0.00; degenerate: only punctuation or symbols)",
        "(format ✓) (ROUGE-L 0.80) | ticket_id ✓ |",
        "| Ticket NW-9144: City of Paris (✗ in the task's format) |",
    ]:
        assert expected in text, expected
    assert "**FAIL**" not in text  # a warning is not shown as a failure
