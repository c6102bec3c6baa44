"""The chat page's Continue button, driven through the app's own handlers in Chainlit sessions (no browser): shown
with an interrupted run's outcome and beside it in `/runs`, it starts the continue in the tab's thread, which stops
at the approval card like any request; a press for a run the tab was not shown is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.ui import app as chainlit_app
from agent.ui.continuing import CONTINUE_ACTION, NOT_SHOWN
from agent.ui.views import APPROVAL_ACTION, ChatView
from tests.agent.test_continue_in_chat import small, stopped_run  # noqa: F401 - the fixture, and the run it stops
from tools.job.state import JobState
from tools.policy.store import spend_store
from tools.use.continuing import newest_checkpoint

pytestmark = pytest.mark.slow


class Tab:
    """One browser tab as the server sees it: what it was sent (messages, and the actions under them)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.said: list[str] = []
        self.actions: list[dict[str, Any]] = []

    async def emit(self, event: str, data: Any) -> None:
        if event in ("new_message", "update_message") and isinstance(data, dict):
            self.said.append(str(data.get("output", "")))
        elif event == "action" and isinstance(data, dict):
            self.actions.append(data)

    def buttons(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.actions if a["name"] == name]

    async def run(self, steps: Callable[[], Awaitable[None]]) -> None:
        from chainlit.context import init_ws_context
        from chainlit.session import WebsocketSession

        async def nothing(*_: Any) -> None:
            return None

        session = WebsocketSession(self.session_id, "sock-" + self.session_id, self.emit, nothing, {}, "webapp")
        session.files_dir.parent.mkdir(parents=True, exist_ok=True)  # the server makes it at start (no server here)
        try:
            init_ws_context(session)
            await steps()
        finally:
            await session.delete()


def press(name: str, payload: dict[str, Any]) -> Any:
    return chainlit_app.cl.Action(name=name, payload=payload)


@pytest.fixture
def agent() -> Any:
    """The app's one agent session, made afresh for this test's folders and closed after it."""
    chainlit_app.agent_session.cache_clear()
    yield chainlit_app.agent_session
    chainlit_app.agent_session().close()
    chainlit_app.agent_session.cache_clear()


def test_continue_from_the_outcome_and_from_runs_reaches_the_approval_card(small: Path, agent: Any) -> None:  # noqa: F811
    stopped = stopped_run(small, person="anonymous")  # the chat page without sign-in
    run = stopped.run_id
    assert stopped.report_path and Path(stopped.report_path).is_file()

    stranger = Tab("tab-stranger")

    async def press_unoffered() -> None:
        await chainlit_app.on_continue(press(CONTINUE_ACTION, {"run_id": run}))

    asyncio.run(stranger.run(press_unoffered))
    assert stranger.said == [NOT_SHOWN] and agent().pending(run) is None

    mine = Tab("tab-mine")

    async def continue_then_cancel() -> None:
        await ChatView.current().show_outcome(stopped)  # what the tab shows when the run stopped
        [button] = mine.buttons(CONTINUE_ACTION)
        assert button["payload"] == {"run_id": run}
        await chainlit_app.on_continue(press(CONTINUE_ACTION, button["payload"]))
        [cancel] = [a for a in mine.buttons(APPROVAL_ACTION) if a["payload"]["decision"] == "cancel"]
        thread = cancel["payload"]["thread_id"]
        assert agent().pending(thread).run_id == run
        await chainlit_app.on_approval(press(APPROVAL_ACTION, cancel["payload"]))
        await asyncio.gather(*list(chainlit_app._TASKS))

    asyncio.run(mine.run(continue_then_cancel))
    text = "\n".join(mine.said)
    assert f"Run `{run}` interrupted" in text and "**Continue** picks it up" in text
    assert (
        "Approval needed: run" in text
        and f"**Continue** of run `{run}` from its checkpoint at step {newest_checkpoint(stopped).step}" in text
    )
    assert "**Cancelled**" in text and "Traceback" not in text
    job = JobState.model_validate_json((Path(stopped.run_dir) / "job.json").read_text())
    assert job.status == "cancelled" and len(job.attempts) == 1
    assert len(spend_store().attempts(job_id=run)) == 1


def test_runs_lists_a_continue_button_for_a_run_that_stopped(small: Path, agent: Any) -> None:  # noqa: F811
    stopped = stopped_run(small, person="anonymous")  # the chat page without sign-in
    tab = Tab("tab-runs")

    async def list_then_press() -> None:
        await chainlit_app.on_message(chainlit_app.cl.Message(content="/runs"))
        [button] = tab.buttons(CONTINUE_ACTION)
        assert button["payload"] == {"run_id": stopped.run_id} and button["label"] == f"Continue {stopped.run_id}"
        await chainlit_app.on_continue(press(CONTINUE_ACTION, button["payload"]))

    asyncio.run(tab.run(list_then_press))
    text = "\n".join(tab.said)
    assert "**Past runs**" in text and "Approval needed: run" in text and NOT_SHOWN not in text
