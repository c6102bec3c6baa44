"""The chat page's cards in Chromium: the approval card (the spec once, money that adds up), the result card (the
loss chart, Try it streamed, the report behind a link), /runs paged and compared, the logo, icons and footer.

The screenshots of the two cards are written to docs/ (the README and the closing note show them).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.agent.test_ui_browser import (  # noqa: F401 - the fixtures, and the helpers that drive the page
    REQUEST,
    TURN_TIMEOUT_MS,
    _open_chat,
    _send,
    browser,
    ui_url,
)
from tests.agent.test_ui_cards import write_runs
from tools.core.paths import PROJECT_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOCS = PROJECT_ROOT / "docs"
MONEY = re.compile(r"\$([\d,]+\.\d+)")


def _dollars(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in MONEY.findall(text)]


def _check_money(card_text: str) -> str:
    """The card's figures add up: the worst case is the sum of its attempts, the hold covers the estimate; the
    worst case as written."""
    lines = card_text.splitlines()
    [estimate] = _dollars(next(line for line in lines if line.startswith("This run (estimate)")))
    worst = next(line for line in lines if line.startswith("Worst case"))
    *parts, total = _dollars(worst.split("(the budget")[0])
    assert parts and abs(sum(parts) - total) < 1e-9, worst
    assert abs(parts[0] - estimate) < 0.00005 + 1e-9, (parts[0], estimate)
    held = next(line for line in lines if line.startswith("Held while an attempt runs"))
    assert _dollars(held)[0] >= estimate, held
    return "$" + MONEY.findall(worst.split("(the budget")[0])[-1]


def test_the_approval_card_then_the_result_card_with_its_chart_and_try_it_streamed(
    ui_url: str,  # noqa: F811
    browser: object,  # noqa: F811
) -> None:
    page = _open_chat(browser, ui_url)
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
    page.reload()  # the socket opens again with the listener on
    page.wait_for_selector("#chat-input", timeout=60_000)
    _send(page, REQUEST)
    approve = page.get_by_role("button", name=re.compile(r"^Approve"))
    expect(approve).to_be_visible(timeout=120_000)

    body = page.inner_text("body")
    assert body.count("Aegis chose:") == 1 and body.count("You asked:") == 1
    assert '"model_name"' not in body and "From you:" not in body, "the spec is printed in full on the page"
    total = _check_money(body)  # its money rows appear on the approval card alone
    assert f"at most {total} with retries" in approve.inner_text(), "the Approve button names another amount"
    DOCS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 1900})
    approve.scroll_into_view_if_needed()
    page.screenshot(path=str(DOCS / "ui-approval-card.png"))
    page.set_viewport_size({"width": 1280, "height": 1500})
    page.locator("summary", has_text="The spec in full").last.click()  # the closed block opens under the card
    expect(page.get_by_text('"model_name": "local:tiny-llama"').last).to_be_visible(timeout=10_000)

    approve.click()
    expect(page.locator("#aegis-live-loss")).to_be_visible(timeout=TURN_TIMEOUT_MS)  # the live chart
    expect(page.get_by_text(re.compile(r"(succeeded|trained, but its evals failed)")).first).to_be_visible(
        timeout=TURN_TIMEOUT_MS
    )
    image = page.locator("img[alt^='loss_curve']")
    expect(image).to_be_visible(timeout=30_000)
    assert image.evaluate("img => img.complete && img.naturalWidth > 0"), "the loss chart image did not load"
    expect(page.get_by_text(re.compile(r"REPORT-.*\.md")).first).to_be_visible()
    body = page.inner_text("body")
    assert "Event Timeline" not in body, "the whole report is pasted into the chat"
    assert "Cost · time" in body and "Held-out loss" in body
    assert "Traceback" not in body and "Something went wrong" not in body
    page.locator("summary", has_text="The full report").last.click()
    expect(page.get_by_text("Event Timeline").first).to_be_visible(timeout=10_000)
    page.locator("summary", has_text="The full report").last.click()  # closed again for the screenshot
    page.set_viewport_size({"width": 1280, "height": 2300})
    page.get_by_role("button", name="Try it").first.scroll_into_view_if_needed()
    page.screenshot(path=str(DOCS / "ui-result-card.png"))
    page.set_viewport_size({"width": 1280, "height": 1500})

    page.get_by_role("button", name="Try it").first.click()
    expect(page.get_by_text(re.compile(r"^What should run"))).to_be_visible(timeout=30_000)
    _send(page, "Classify the sentiment: the case is great.")
    expect(page.get_by_text("The base model says").first).to_be_visible(timeout=120_000)
    expect(page.get_by_text("Ask again?")).to_be_visible(timeout=120_000)
    tokens = [f for f in frames if f.startswith('42["stream_token"')]
    assert len(tokens) > 1, f"Try it was not streamed token by token ({len(frames)} socket frames)"
    assert "The fine-tuned model says" in page.inner_text("body")


def test_runs_page_filter_and_compare_with_the_projects_logo_icons_and_footer(
    ui_url: str,  # noqa: F811
    browser: object,  # noqa: F811
) -> None:
    ids = write_runs(Path(os.environ["AEGIS_RUNS_DIR"]), 13)
    page = _open_chat(browser, ui_url)
    for path in ("/logo?theme=light", "/logo?theme=dark", "/favicon"):
        response = page.request.get(ui_url + path)
        assert response.status == 200 and b"Aegis-ML" in response.body() or path == "/favicon", path
    icons = page.locator("img[src*='/public/icons/']")
    expect(icons.first).to_be_visible(timeout=30_000)
    assert icons.count() == 5
    for i in range(icons.count()):
        src = str(icons.nth(i).get_attribute("src"))
        assert page.request.get(ui_url + src if src.startswith("/") else src).status == 200, src
        assert icons.nth(i).evaluate("img => img.complete && img.naturalWidth > 0"), src

    _send(page, "/runs")
    expect(page.get_by_text(re.compile(r"1–10 of 13"))).to_be_visible(timeout=30_000)
    expect(page.get_by_text("built-in rules (no language model)")).to_be_visible()  # the footer, under the chat
    assert "LLMs can make mistakes" not in page.inner_text("body")
    page.get_by_role("button", name="Next").last.click()
    expect(page.get_by_text(re.compile(r"11–13 of 13"))).to_be_visible(timeout=30_000)
    _send(page, "/runs cancelled")
    expect(page.get_by_text(re.compile(r"1–6 of 6, filtered by"))).to_be_visible(timeout=30_000)
    page.get_by_role("button", name=f"Compare {ids[-2]}").last.click()
    expect(page.get_by_text(re.compile(rf"Picked {ids[-2]}"))).to_be_visible(timeout=30_000)
    page.get_by_role("button", name=f"Compare {ids[-4]}").last.click()
    expect(page.get_by_text(re.compile(rf"Compare {ids[-2]} with {ids[-4]}"))).to_be_visible(timeout=30_000)
    body = page.inner_text("body")
    assert "Traceback" not in body and "Something went wrong" not in body
