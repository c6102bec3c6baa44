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
