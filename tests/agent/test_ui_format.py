"""The chat UI's pure parts: what a person reads for the typed tool results, and the pending-approval index."""

from __future__ import annotations

import argparse

from agent.cli.ui import APP, register, ui_command, ui_env
from agent.results import (
    ApprovalResult,
    EstimateFacts,
    EstimateResult,
    EvalFacts,
    EvalsResult,
    PreflightFacts,
    RemediateResult,
    RemediationFacts,
    RunResult,
)
from agent.ui import cards, presenters
from agent.ui.pending import PendingIndex
from tools.core.money import usd
from tools.core.paths import PROJECT_ROOT
from tools.core.spec import EvalCheck, TrainingSpec
from tools.plan.preflight import PreflightCheck
from tools.report.approval import ApprovalRequest

SPEC = TrainingSpec(model_name="local:tiny-llama", dataset_path="data/sample.jsonl", target_gpu="a10g")


def facts(**changes: object) -> EstimateFacts:
    fields: dict[str, object] = {
        "estimated_cost_usd": 0.0092,
        "estimated_duration_min": 0.5,
        "estimated_vram_gb": 0.82,
        "gpu": "a10g",
        "num_gpus": 1,
        "fits": False,
        "gpu_memory_gb": 24.0,
        "total_steps": 4,
        "dataset_rows": 40,
        "dataset_tokens": 5120,
        "trainable_params": 12_288,
        "total_params": 4_000_000,
        "soft_threshold_usd": 0.0001,
        "max_budget_usd": 5.0,
        "spent_usd": 0.0,
        "spec": SPEC,
        "quote_hash": "0123456789abcdef",
    }
    return EstimateFacts.model_validate(fields | changes)


def test_md_safe_keeps_colon_words_outside_code_and_leaves_code_alone() -> None:
    text = 'Gate: approved by person:chainlit at 21:42\n```json\n{"model": "local:tiny-llama"}\n```\nsee `local:tiny-llama`'
    safe = presenters.md_safe(text)
    assert "person\\:chainlit" in safe and "21:42" in safe
    assert '"local:tiny-llama"' in safe and "`local:tiny-llama`" in safe


def test_the_ui_formats_money_with_the_one_formatter_and_small_amounts_keep_their_digits() -> None:
    assert presenters.usd is usd
    assert usd(0.0001) == "$0.0001"
    assert usd(0.0092) == "$0.0092"
    assert usd(0.0) == "$0.00"
    assert usd(5) == "$5.00"


def test_estimate_result_is_a_table_against_the_limits() -> None:
    text = presenters.format_tool_result(EstimateResult(ok=True, status="estimated", estimate=facts()))
    assert text.startswith("**estimated**\n\n")
    assert "| Cost | **$0.0092** | soft $0.0001 · hard $5.00" in text
    assert "| GPU memory | 0.82 GB | a10g 24 GB: **does not fit** |" in text
    assert "| Trainable parameters | 12,288 of 4,000,000 | |" in text


def test_refusals_and_eval_checks_read_plainly() -> None:
    refused = RunResult(tool="run_local", ok=False, status="refused", message="no approval")
    assert presenters.format_tool_result(refused) == "**refused**: no approval"
    assert presenters.is_error(refused)
    checks = [EvalCheck(name="loss_improved", passed=False, value=0.01, threshold=0.05, detail="a | b")]
    failed = EvalsResult(ok=False, status="failed", evals=EvalFacts(checks=checks))
    assert "| loss_improved | **FAIL** | 0.01 | 0.05 | a / b |" in presenters.format_tool_result(failed)


def test_a_remediation_shows_its_rule_what_it_changed_and_the_healed_estimate() -> None:
    healed = RemediateResult(
        ok=True,
        status="remediated",
        message="the healed spec needs request_approval before it can run",
        remediation=RemediationFacts(
            retry_count=1,
            max_retries=3,
            rule="halve_batch",
            changes={"micro_batch_size": [4, 2]},
            explanation="out of memory: half the micro batch",
        ),
        estimate=facts(fits=True),
    )
    text = presenters.format_tool_result(healed)
    assert "Retry 1/3 by rule `halve_batch` (micro_batch_size 4 → 2): out of memory" in text
    assert "a10g 24 GB: fits" in text and not presenters.is_error(healed)


def test_an_approval_names_who_decided() -> None:
    approved = ApprovalResult(ok=True, status="approved", decided_by="policy:auto", message="within the soft limit")
    assert presenters.format_tool_result(approved) == "**approved**: within the soft limit\n\ndecided by `policy:auto`"


def test_pending_index_is_per_owner_and_forgets_answered_threads(tmp_path) -> None:
    index = PendingIndex(tmp_path / "ui.sqlite")
    index.add("t1", "anonymous")
    index.add("t2", "alice")
    assert index.threads("anonymous") == ["t1"]
    assert PendingIndex(tmp_path / "ui.sqlite").threads("alice") == ["t2"]
    index.discard("t1")
    assert index.threads("anonymous") == []


def test_ui_command_runs_chainlit_headless_from_the_project(monkeypatch) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ui", "--port", "8123", "--model", "offline"])
    assert (args.host, args.port, args.model) == ("127.0.0.1", 8123, "offline")
    cmd = ui_command(args.host, args.port)
    assert cmd[1:4] == ["-m", "chainlit", "run"] and str(APP) in cmd and "--headless" in cmd
    assert APP == PROJECT_ROOT / "agent" / "ui" / "app.py" and APP.is_file()
    env = ui_env("offline")
    assert env["AEGIS_MODEL"] == "offline"
    assert (PROJECT_ROOT / "chainlit.md").is_file() and env["CHAINLIT_APP_ROOT"] == str(PROJECT_ROOT)


def test_a_failed_preflight_names_the_rows_and_spends_nothing() -> None:
    preflight = PreflightFacts(
        passed=False,
        checks=[
            PreflightCheck(name="dataset_parses", status="pass", detail="6 rows in format 'messages'"),
            PreflightCheck(name="target_tokens", status="fail", detail="rows 2, 4 keep no target token"),
        ],
        truncated_share=0.33,
    )
    result = EstimateResult(
        ok=False,
        status="preflight_failed",
        message="pre-flight failed: target_tokens: rows 2, 4 keep no target token",
        estimate=facts(preflight=preflight),
    )
    text = presenters.format_tool_result(result)
    assert "**failed**: nothing will be asked for or spent" in text
    assert "target_tokens: **FAIL** — rows 2, 4" in text and "dataset_parses: pass" in text
    assert "| Cost |" not in text  # nothing is priced for a person to approve


def test_the_approval_lists_every_priced_attempt_and_the_time_limit() -> None:
    attempts = [
        {"attempt": 1, "rule": "as approved", "changes": {}, "estimated_cost_usd": 0.5, "estimated_minutes": 10.0},
        {
            "attempt": 2,
            "rule": "oom: halve micro_batch_size",
            "changes": {},
            "estimated_cost_usd": 0.6,
            "estimated_minutes": 12.0,
        },
    ]
    request = ApprovalRequest(
        run_id="r1",
        request_id="req-1",
        spec_hash="abc",
        quote_hash="q1",
        estimate_hash="e1",
        data_digest="d1",
        spec={"method": "lora", "model_name": "m", "dataset_path": "d", "num_gpus": 1, "target_gpu": "a10g"},
        estimated_cost_usd=0.5,
        estimated_duration_min=10.0,
        estimated_vram_gb=8.0,
        fits=True,
        gpu="a10g",
        spent_usd=0.0,
        soft_threshold_usd=0.1,
        max_budget_usd=1.0,
        reason="above the soft threshold",
        attempts=attempts,
        worst_case_usd=1.1,
        retries_budget_allows=0,
        dtype="bf16",
        timeout_s=1800.0,
        max_attempt_cost_usd=0.55,
    )
    text = cards.approval_card(request, "tune m on d")
    assert "**You asked:** tune m on d" in text and "**Aegis chose:** lora of `m` on `d`" in text
    assert "$0.50 + $0.60 = **$1.10**" in text and "the budget allows 0 retries" in text
    assert "$0.55: its 30-min time limit" in text and "only the time used is billed" in text
    assert "**Spec** `abc` (every field: the closed block under this card)" in text and '"model_name"' not in text
    details = cards.approval_details(request)
    assert "| 2 | oom: halve micro_batch_size | $0.60 | 12.0 min |" in details and '"model_name": "m"' in details
