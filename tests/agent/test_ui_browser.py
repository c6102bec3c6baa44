"""The Chainlit chat in a real browser: ask for a fine-tune, answer the gate, see training and the report.

The app runs as `aegis ui` runs it (same command and environment), on a free port, with its own runs
folder; Chromium comes from the system (`apt-get install -y chromium`), never a Playwright download.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from agent.cli.ui import ui_env
from tests.ui_server import serve_ui
from tools.core.paths import PROJECT_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("AEGIS_CHROMIUM", "/usr/bin/chromium"))  # a system Chromium or Chrome
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
# About 16 optimizer steps of the tiny model; on a10g the estimate is about a cent: between the limits below.
REQUEST = (
    "LoRA fine-tune local:tiny-llama on data/sample.jsonl for 1 epoch with batch size 8, seq_len 128, "
    "learning rate 3e-3, on a10g for 20 steps"
)
SOFT_USD, HARD_USD = "0.0001", "5"
GPU_STAND_IN = "tests.stand_ins:PaidGpuStandIn"
TURN_TIMEOUT_MS = 240_000  # a shared CI runner can be slow to train and evaluate; a quiet one takes under a minute


@pytest.fixture
def ui_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`aegis ui` on 127.0.0.1 and a free port, state under tmp (conftest), limits that make a person decide."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")

    monkeypatch.setenv("AEGIS_SOFT_THRESHOLD_USD", SOFT_USD)
    monkeypatch.setenv("AEGIS_MAX_BUDGET_USD", HARD_USD)
    monkeypatch.setenv("AEGIS_MODEL", "offline")
    monkeypatch.setenv("AEGIS_BACKEND_PLUGINS", GPU_STAND_IN)  # the a10g runs on a stand-in for Modal's cloud
    with serve_ui(tmp_path, ui_env()) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[object]:
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def _open_client(browser: object, url: str):  # noqa: ANN202 - playwright Page and a session id
    """A new page in a new browser context (another client), and the Chainlit session id it connects with."""
    page = browser.new_page(viewport={"width": 1280, "height": 1500})  # type: ignore[attr-defined]
    with page.expect_request("**/set-session-cookie") as request:
        page.goto(url)
    page.wait_for_selector("#chat-input", timeout=60_000)
    return page, str(request.value.post_data_json["session_id"])


def _open_chat(browser: object, url: str):  # noqa: ANN202 - playwright Page
    return _open_client(browser, url)[0]


def _press(page, session_id: str, payload: dict[str, str]) -> int:  # noqa: ANN001
    """Press an approval button by hand, as a page's script could: any payload, from this page's session."""
    return int(
        page.evaluate(
            """async ([sessionId, payload]) => (await fetch('/project/action', {
                method: 'POST', headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({sessionId, action: {name: 'aegis_approval', payload, label: 'Approve'}}),
            })).status""",
            [session_id, payload],
        )
    )


def _pending(runs: Path) -> list[tuple[str, str]]:
    """The UI's index of paused threads and their owners."""
    with sqlite3.connect(runs / "ui_threads.sqlite") as db:
        return [(str(t), str(o)) for t, o in db.execute("SELECT thread_id, owner FROM pending")]


def _send(page, text: str) -> None:  # noqa: ANN001
    page.locator("#chat-input").fill(text)
    expect(page.locator("#chat-submit")).to_be_enabled(timeout=30_000)  # enabled once the socket is up
    page.locator("#chat-submit").click()


def _open_step(page, name: str) -> None:  # noqa: ANN001
    page.get_by_text(f"Used {name}", exact=True).first.click()


def _run_dirs(runs: Path) -> list[Path]:
    """The run folders: those with an event log (the runs folder also keeps locks and stores)."""
    return [p for p in runs.iterdir() if (p / "events.jsonl").is_file()]


def _run_dir(runs: Path) -> Path:
    dirs = _run_dirs(runs)
    assert len(dirs) == 1, f"expected one run folder in {runs}, found {dirs}"
    return dirs[0]


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]


def test_approve_trains_and_shows_the_report(ui_url: str, browser: object) -> None:
    page = _open_chat(browser, ui_url)
    _send(page, REQUEST)

    approve = page.get_by_role("button", name="Approve")
    expect(approve).to_be_visible(timeout=120_000)
    # the spec (what Aegis chose), and the estimate between the limits
    expect(page.get_by_text(re.compile(r"^Aegis chose: lora of local:tiny-llama"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"Approval needed: run"))).to_be_visible()
    expect(page.get_by_text(f"soft ${SOFT_USD} · hard ${float(HARD_USD):.2f}", exact=False)).to_be_visible()
    _open_step(page, "estimate_cost")
    expect(page.get_by_text("Trainable parameters")).to_be_visible()
    expect(page.get_by_role("button", name="Optimize")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()

    approve.click()
    expect(page.get_by_text("Decision: approve by person:chainlit")).to_be_visible(timeout=30_000)
    # live progress with real loss numbers, then the report
    expect(page.get_by_text(re.compile(r"loss \d+\.\d{4}")).first).to_be_visible(timeout=TURN_TIMEOUT_MS)
    expect(page.locator("summary", has_text="The full report")).to_be_visible(timeout=TURN_TIMEOUT_MS)
    page.locator("summary", has_text="The full report").click()  # the report, behind one click
    expect(page.get_by_text("Event Timeline")).to_be_visible()
    expect(page.get_by_text("Cost Gate Decision")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Training finished"))).to_be_visible()
    expect(page.get_by_role("cell", name="Checks", exact=True)).to_be_visible()
    expect(page.locator("img[alt^='loss_curve']")).to_be_visible()
    expect(page.get_by_text(re.compile(r"REPORT-.*\.md")).first).to_be_visible()
    body = page.inner_text("body")
    assert "Traceback" not in body and "Something went wrong" not in body

    run_dir = _run_dir(Path(os.environ["AEGIS_RUNS_DIR"]))
    report = (run_dir / "REPORT.md").read_text()
    assert "person:chainlit" in report
    approvals = [e for e in _events(run_dir) if e["phase"] == "approval"]
    assert [e["data"]["approval"]["decided_by"] for e in approvals] == ["person:chainlit"]
    steps = [e for e in _events(run_dir) if e["phase"] == "train" and e["status"] == "completed"]
    assert steps, "the run did not train"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 2300})
    page.get_by_text(re.compile(r"^Approval needed: run")).scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "ui-approve.png"))
    if os.environ.get("AEGIS_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(ARTIFACTS / "ui-approve.png", PROJECT_ROOT / "docs" / "ui-screenshot.png")


def test_another_client_neither_sees_nor_answers_an_approval_and_cancel_trains_nothing(
    ui_url: str, browser: object
) -> None:
    runs = Path(os.environ["AEGIS_RUNS_DIR"])
    page, mine = _open_client(browser, ui_url)
    _send(page, REQUEST)
    expect(page.get_by_role("button", name="Cancel")).to_be_visible(timeout=120_000)
    [(thread_id, owner)] = _pending(runs)
    assert owner == f"anonymous/{mine}"
    match = re.search(r"Spec (\w+) \(", page.inner_text("body"))
    assert match, "the approval shows its spec hash"
    approve = {"thread_id": thread_id, "spec_hash": match.group(1), "decision": "approve"}

    # another anonymous client: no buttons on connect, and a press forged with the right thread and hash is refused
    other, theirs = _open_client(browser, ui_url)
    assert theirs != mine
    assert _press(other, theirs, approve) == 200
    expect(other.get_by_text(re.compile(r"^That approval is not waiting any more"))).to_be_visible(timeout=30_000)
    other.wait_for_timeout(2_000)  # long after its chat started
    expect(other.get_by_text(re.compile(r"is still waiting for an answer"))).to_have_count(0)
    expect(other.get_by_role("button", name="Approve")).to_have_count(0)
    assert _pending(runs) == [(thread_id, owner)]
    expect(page.get_by_role("button", name="Approve")).to_be_visible()

    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_text("Decision: cancel by person:chainlit")).to_be_visible(timeout=30_000)
    expect(page.get_by_text(re.compile(r"was not trained and nothing was spent"))).to_be_visible(
        timeout=TURN_TIMEOUT_MS
    )
    # the owner's second answer is refused too: an approval is answered at most once
    assert _press(page, mine, approve) == 200
    expect(page.get_by_text(re.compile(r"^That approval is not waiting any more"))).to_be_visible(timeout=30_000)

    run_dir = _run_dir(runs)
    events = _events(run_dir)
    assert not [e for e in events if e["phase"] == "train"], "a cancelled run must not train"
    assert not list(run_dir.glob("attempt*")), "a cancelled run must not even render a training attempt"
    decisions = [e for e in events if e["phase"] == "approval"]
    assert len(decisions) == 1 and "cancelled by person:chainlit" in decisions[0]["message"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.get_by_text(re.compile(r"was not trained and nothing was spent")).scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "ui-cancel.png"))


def test_errors_are_plain_messages_and_the_server_keeps_serving(ui_url: str, browser: object) -> None:
    page = _open_chat(browser, ui_url)
    _send(page, "LoRA fine-tune local:tiny-llama on data/missing.jsonl on a10g for 20 steps")
    expect(page.get_by_text(re.compile(r"data/missing\.jsonl' does not exist"))).to_be_visible(timeout=60_000)

    _send(page, "LoRA fine-tune local:tiny-llama on data/sample.jsonl on a10g for 20 steps, keep it under $0.001")
    expect(page.get_by_text(re.compile(r"^Refused by the gate"))).to_be_visible(timeout=120_000)
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    body = page.inner_text("body")
    assert "Traceback" not in body and 'File "' not in body
    for run_dir in _run_dirs(Path(os.environ["AEGIS_RUNS_DIR"])):
        assert not [e for e in _events(run_dir) if e["phase"] == "train"], "a refused run must not train"
