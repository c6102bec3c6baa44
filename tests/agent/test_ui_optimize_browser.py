"""Issue 17 in the browser: a job that does not fit ends with the optimizer's offer at the gate, the
candidates table shown, and the person takes it with Approve in Chainlit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.agent.test_ui_browser import _events, _open_chat, _run_dir, _send, browser, ui_url  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOES_NOT_FIT = "Full fine-tune of meta-llama/Llama-2-7b-hf on data/sample.jsonl, max 3 steps, on an A10G"


def test_a_job_that_does_not_fit_is_offered_the_optimizers_spec_and_approve_takes_it(
    ui_url: str,  # noqa: F811
    browser: object,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    page = _open_chat(browser, ui_url)
    _send(page, DOES_NOT_FIT)
    approve = page.get_by_role("button", name="Approve")
    expect(approve).to_be_visible(timeout=180_000)
    expect(page.get_by_text("The optimizer proposes", exact=False).first).to_be_visible()
    expect(page.get_by_text("→ chosen", exact=False).first).to_be_visible()
    expect(page.get_by_text("Near misses:", exact=False).first).to_be_visible()
    approve.click()
    expect(page.get_by_text("Decision: approve by person:chainlit")).to_be_visible(timeout=60_000)
    body = page.inner_text("body")
    assert "Traceback" not in body and "Something went wrong" not in body

    run_dir = _run_dir(Path(os.environ["AEGIS_RUNS_DIR"]))
    events = _events(run_dir)
    assert any(e["phase"] == "optimize" and e["data"].get("offer") for e in events)
    approvals = [e for e in events if e["phase"] == "approval" and e["status"] == "completed"]
    assert [e["data"]["approval"]["decided_by"] for e in approvals] == ["person:chainlit"]
