"""The chat UI's pure parts: what a person reads for the estimate and checks, and the pending-approval index."""

from __future__ import annotations

import argparse
import json

import pytest

chainlit_app = pytest.importorskip("agent.chainlit_app")


def test_md_safe_keeps_colon_words_outside_code_and_leaves_code_alone() -> None:
    text = 'Gate: approved by person:chainlit at 21:42\n```json\n{"model": "local:tiny-llama"}\n```\nsee `local:tiny-llama`'
    safe = chainlit_app.md_safe(text)
    assert "person\\:chainlit" in safe and "21:42" in safe
    assert '"local:tiny-llama"' in safe and "`local:tiny-llama`" in safe


def test_small_amounts_keep_their_digits() -> None:
    assert chainlit_app.usd(0.0001) == "$0.0001"
    assert chainlit_app.usd(0.0092) == "$0.0092"
    assert chainlit_app.usd(0.0) == "$0.00"
    assert chainlit_app.usd(5) == "$5.00"


def test_estimate_result_is_a_table_against_the_limits() -> None:
    payload = {
        "ok": True,
        "status": "estimated",
        "estimated_cost_usd": 0.0092,
        "estimated_duration_min": 0.5,
        "estimated_vram_gb": 0.82,
        "gpu": "a10g",
        "num_gpus": 1,
        "fits": False,
        "gpu_memory_gb": 24.0,
        "total_steps": 4,
        "soft_threshold_usd": 0.0001,
        "max_budget_usd": 5.0,
        "spent_usd": 0.0,
    }
    text = chainlit_app.format_tool_result("estimate_cost", payload)
    assert "| Cost | **$0.0092** | soft $0.0001 · hard $5.00" in text
    assert "| GPU memory | 0.82 GB | a10g 24 GB: **does not fit** |" in text


def test_refusals_and_eval_checks_read_plainly() -> None:
    refused = chainlit_app.format_tool_result("run_local", {"ok": False, "status": "refused", "message": "no approval"})
    assert refused == "**refused**: no approval"
    checks = [{"name": "loss_improved", "passed": False, "value": 0.01, "threshold": 0.05, "detail": "a | b"}]
    table = chainlit_app.format_tool_result("run_evals", {"ok": False, "status": "failed", "checks": checks})
    assert "| loss_improved | **FAIL** | 0.01 | 0.05 | a / b |" in table


def test_unknown_results_show_their_fields() -> None:
    text = chainlit_app.format_tool_result("remediate", {"ok": True, "status": "remediated", "rule": "halve_batch"})
    assert json.loads(text.split("```json\n", 1)[1].rsplit("```", 1)[0]) == {"rule": "halve_batch"}


def test_pending_index_is_per_owner_and_forgets_answered_threads(tmp_path) -> None:
    index = chainlit_app.PendingIndex(tmp_path / "ui.sqlite")
    index.add("t1", "anonymous")
    index.add("t2", "alice")
    assert index.threads("anonymous") == ["t1"]
    assert chainlit_app.PendingIndex(tmp_path / "ui.sqlite").threads("alice") == ["t2"]
    index.discard("t1")
    assert index.threads("anonymous") == []


def test_ui_command_runs_chainlit_headless_from_the_project(monkeypatch) -> None:
    from agent.ui_command import APP, register_ui_command, ui_command, ui_env

    parser = argparse.ArgumentParser()
    register_ui_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ui", "--port", "8123", "--model", "offline"])
    assert (args.host, args.port, args.model) == ("127.0.0.1", 8123, "offline")
    cmd = ui_command(args.host, args.port)
    assert cmd[1:4] == ["-m", "chainlit", "run"] and str(APP) in cmd and "--headless" in cmd
    env = ui_env("offline")
    assert env["AEGIS_MODEL"] == "offline"
    assert (APP.parent.parent / "chainlit.md").is_file() and env["CHAINLIT_APP_ROOT"] == str(APP.parent.parent)


def test_a_failed_preflight_names_the_rows_and_spends_nothing() -> None:
    payload = {
        "ok": False,
        "status": "preflight_failed",
        "message": "pre-flight failed: target_tokens: rows 2, 4 keep no target token",
        "preflight": {
            "passed": False,
            "checks": [
                {"name": "dataset_parses", "status": "pass", "detail": "6 rows in format 'messages'"},
                {"name": "target_tokens", "status": "fail", "detail": "rows 2, 4 keep no target token"},
            ],
        },
    }
    text = chainlit_app.format_tool_result("estimate_cost", payload)
    assert "**failed**: nothing will be asked for or spent" in text
    assert "target_tokens: **FAIL** — rows 2, 4" in text and "dataset_parses: pass" in text


def test_the_approval_lists_every_priced_attempt_and_the_time_limit() -> None:
    from agent.approval import ApprovalRequest

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
    text = chainlit_app.approval_text(request)
    assert "**Worst case** (every attempt fails but the last): **$1.10**" in text
    assert "| 2 | oom: halve micro_batch_size | $0.6000 | 12.0 min |" in text
    assert "allows 0 retries" in text and "stops after 30 min" in text and "at most $0.5500" in text
