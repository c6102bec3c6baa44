"""The chat's landing page shows what to type, and the approval buttons say what they do with the money."""

from __future__ import annotations

import pytest

from agent.ui.landing import STARTERS, spend_label
from tests.agent.test_ui_browser import _open_chat, browser, ui_url  # noqa: F401 - fixtures
from tools.core.status import Decision
from tools.report.approval import ApprovalRequest


@pytest.mark.browser
@pytest.mark.slow
def test_landing_page_offers_starters_and_one_runs(ui_url: str, browser: object) -> None:  # noqa: F811
    from playwright.sync_api import expect

    page = _open_chat(browser, ui_url)
    for label, _message, _icon in STARTERS:
        expect(page.get_by_text(label)).to_be_visible(timeout=30_000)
    page.get_by_text("Ask for a GPU that is not here").click()  # here a stand-in for Modal has it, over budget
    expect(page.get_by_text("Refused by the gate", exact=False).first).to_be_visible(timeout=120_000)


def _request(**kw) -> ApprovalRequest:
    fields = ApprovalRequest.model_fields
    values = {name: (f.default if f.default is not None else None) for name, f in fields.items() if not f.is_required()}
    return ApprovalRequest.model_construct(**{**values, **kw})


def test_buttons_name_the_money():
    req = _request(estimated_cost_usd=0.42, worst_case_usd=1.26)
    assert spend_label(Decision.APPROVE, req) == (
        "Approve: spend $0.42 (at most $1.26 with retries)",
        "circle-dollar-sign",
    )
    assert spend_label(Decision.APPROVE, _request(estimated_cost_usd=0.42, worst_case_usd=None))[0] == (
        "Approve: spend $0.42"
    )
    assert spend_label(Decision.CANCEL, req)[0] == "Cancel: spend nothing"
    assert spend_label(Decision.OPTIMIZE, req)[0].startswith("Optimize")


@pytest.fixture
def small_evals(monkeypatch):
    for name, value in {"AEGIS_EVAL_ROWS": "4", "AEGIS_EVAL_GENERATIONS": "1", "AEGIS_EVAL_NEW_TOKENS": "8"}.items():
        monkeypatch.setenv(name, value)


@pytest.mark.browser
@pytest.mark.slow
def test_try_it_after_a_run_shows_both_answers(small_evals, ui_url: str, browser: object) -> None:  # noqa: F811
    from playwright.sync_api import expect

    from tests.agent.test_ui_browser import REQUEST, TURN_TIMEOUT_MS, _send

    page = _open_chat(browser, ui_url)
    _send(page, REQUEST)
    approve = page.get_by_role("button", name="Approve")
    expect(approve).to_be_visible(timeout=120_000)
    expect(approve).to_contain_text("spend $")
    approve.click()
    expect(page.get_by_text("Evaluating", exact=False).first).to_be_visible(timeout=TURN_TIMEOUT_MS)
    try_it = page.get_by_role("button", name="Try it")
    expect(try_it).to_be_visible(timeout=TURN_TIMEOUT_MS)
    try_it.click()
    expect(page.get_by_text("What should run", exact=False)).to_be_visible(timeout=30_000)
    _send(page, "How do I restart the router?")
    expect(page.get_by_text("Greedy answers to: How do I restart the router?")).to_be_visible(timeout=120_000)
    expect(page.get_by_text("The base model says")).to_be_visible()
    expect(page.get_by_text("The fine-tuned model says")).to_be_visible()
    body = page.inner_text("body")
    assert "Traceback" not in body and "could not answer" not in body
    # after a reload the page starts afresh; the past runs are one click away, and can be tried again
    page.reload()
    page.get_by_text("Past runs: compare and try them").click()
    expect(page.get_by_text("Past runs (1–1 of 1", exact=False)).to_be_visible(timeout=60_000)
    expect(page.get_by_role("button", name="Try 2")).to_be_visible()


PASSWORD = "correct horse battery staple"
REFUSED_REQUEST = "LoRA fine-tune local:tiny-llama on data/sample.jsonl on a10g for 20 steps, keep it under $0.001"


@pytest.fixture
def signed_in_ui(tmp_path, monkeypatch):
    import secrets as pysecrets

    from agent.cli.ui import ui_env
    from agent.ui.access import hash_password
    from tests.agent.test_ui_browser import CHROMIUM, GPU_STAND_IN
    from tests.ui_server import serve_ui

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    users = tmp_path / "ui-users"
    users.write_text(f"alice:{hash_password(PASSWORD)}\n", encoding="utf-8")
    monkeypatch.setenv("AEGIS_UI_USERS", str(users))
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", pysecrets.token_hex(32))
    monkeypatch.setenv("AEGIS_MODEL", "offline")
    monkeypatch.setenv("AEGIS_BACKEND_PLUGINS", GPU_STAND_IN)
    with serve_ui(tmp_path, ui_env()) as url:
        yield url


def _sign_in(page, url: str) -> None:  # noqa: ANN001 - a playwright Page
    page.goto(url)
    page.fill("#email", "alice")
    page.fill("#password", PASSWORD)
    page.locator("button[type=submit]").click()
    page.wait_for_selector("#chat-input", timeout=60_000)


@pytest.mark.browser
@pytest.mark.slow
def test_a_signed_in_conversation_survives_a_reload(signed_in_ui: str, browser: object) -> None:  # noqa: F811
    from playwright.sync_api import expect

    from tests.agent.test_ui_browser import _send

    page = browser.new_page(viewport={"width": 1280, "height": 1500})  # type: ignore[attr-defined]
    _sign_in(page, signed_in_ui)
    _send(page, REFUSED_REQUEST)
    expect(page.get_by_text("Refused by the gate", exact=False).first).to_be_visible(timeout=120_000)
    page.reload()
    page.wait_for_selector("#chat-input", timeout=60_000)
    expect(page.get_by_text("Your last conversation", exact=False)).to_be_visible(timeout=60_000)
    expect(page.get_by_text(REFUSED_REQUEST).first).to_be_visible()
    expect(page.get_by_text("Refused by the gate", exact=False).first).to_be_visible()
