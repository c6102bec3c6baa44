"""The chat page answers read-only requests in a real browser: rows of a dataset, the runs here, help.

The app runs as `aegis ui` runs it (tests/ui_server.py), with the offline planner and its own runs folder; the
answers appear as chat messages (the rows and the runs visible), and nothing asks for approval or makes a run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from agent.cli.ui import ui_env
from tests.ui_server import serve_ui
from tools.core.paths import runs_dir
from tools.use.runs import run_folders

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("AEGIS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
RUNS = ("20261207-100000-aaaaaa", "20261207-100001-bbbbbb")
ANSWER_MS = 60_000


@pytest.fixture
def ui_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`aegis ui` on 127.0.0.1 and a free port, the offline planner, and two runs in its runs folder."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    monkeypatch.setenv("AEGIS_MODEL", "offline")
    for name in RUNS:
        (runs_dir() / name).mkdir(parents=True)
        (runs_dir() / name / "events.jsonl").write_text("", encoding="utf-8")
    with serve_ui(tmp_path, ui_env()) as url:
        yield url


@pytest.fixture
def page(ui_url: str) -> Iterator[object]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 1500})
            tab.goto(ui_url)
            tab.wait_for_selector("#chat-input", timeout=60_000)
            yield tab
        finally:
            browser.close()


def _send(page, text: str) -> None:  # noqa: ANN001 - a playwright Page
    page.locator("#chat-input").fill(text)
    expect(page.locator("#chat-submit")).to_be_enabled(timeout=30_000)
    page.locator("#chat-submit").click()


def test_rows_of_a_dataset_and_the_runs_are_answered_in_the_chat(page) -> None:  # noqa: ANN001
    _send(page, "show me the first 3 rows of data/sample.jsonl")
    expect(page.get_by_text(re.compile(r"351 rows, format"))).to_be_visible(timeout=ANSWER_MS)
    expect(page.get_by_role("cell", name="Classify the sentiment of this review", exact=False).first).to_be_visible()
    expect(page.get_by_role("cell", name="The official language of Ghana is English.")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Token lengths"))).to_be_visible()

    _send(page, "what runs do I have?")
    expect(page.get_by_text("2 run(s) here, newest first")).to_be_visible(timeout=ANSWER_MS)
    for name in RUNS:
        expect(page.get_by_role("cell", name=name)).to_be_visible()

    _send(page, "help")
    expect(page.get_by_text(re.compile(r"rule-based planner"))).to_be_visible(timeout=ANSWER_MS)
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    body = page.inner_text("body")
    assert "Traceback" not in body and "Something went wrong" not in body and "I need to know" not in body
    assert sorted(p.name for p in run_folders()) == sorted(RUNS)  # nothing made a run
