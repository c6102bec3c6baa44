"""`/spend` in the chat: an operator named in AEGIS_UI_OPERATORS sees the table and the chart; anybody else, an
anonymous tab included, gets one line and nothing about other people's money. Driven through the app's own message
handler in a Chainlit session, without a browser."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agent.ui import app as chainlit_app
from agent.ui.spend import NOT_OPERATOR, is_operator, is_spend_command
from tests.policy.test_spend_report import PNG_MAGIC, fill
from tools.core.paths import runs_dir


@pytest.fixture(autouse=True)
def spend_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "spend.sqlite"
    monkeypatch.setenv("AEGIS_SPEND_DB", str(path))
    monkeypatch.setenv("AEGIS_UI_OPERATORS", " ops , root")
    monkeypatch.setenv("AEGIS_PERSON_MONTH_USD", "20")
    return path


async def _say(session_id: str, user: str | None, text: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Send `text` as `user` (None: an anonymous tab); the messages and the elements that session was sent."""
    from chainlit.context import init_ws_context
    from chainlit.session import WebsocketSession
    from chainlit.user import User

    told: list[str] = []
    elements: list[dict[str, Any]] = []

    async def emit(event: str, data: Any) -> None:
        if event in ("new_message", "update_message") and isinstance(data, dict):
            told.append(str(data.get("output", "")))
        elif event == "element" and isinstance(data, dict):
            elements.append(data)

    async def emit_call(*_: Any) -> None:
        return None

    who = User(identifier=user) if user else None
    session = WebsocketSession(session_id, "sock-" + session_id, emit, emit_call, {}, "webapp", user=who)
    session.files_dir.parent.mkdir(parents=True, exist_ok=True)  # Chainlit's server makes it at start (no server here)
    try:
        init_ws_context(session)
        await chainlit_app.on_message(chainlit_app.cl.Message(content=text))
    finally:
        await session.delete()
    return told, elements


def test_the_command_and_the_operators() -> None:
    assert is_spend_command("/spend") and is_spend_command("  /SPEND day ") and not is_spend_command("spend it")
    assert is_operator("ops") and is_operator("root")
    assert not is_operator(None) and not is_operator("alice") and not is_operator("")


def test_an_operator_sees_the_table_and_the_chart(spend_db: Path) -> None:
    fill(spend_db)
    told, elements = asyncio.run(_say("tab-ops", "ops", "/spend day"))
    [text] = told
    assert "**Spend by day since" in text and "| **total** |" in text
    assert "**Limits**" in text and "**Brake:** spending is open" in text
    [image] = elements
    assert image["type"] == "image" and image["name"] == "spend-day.png" and image["mime"] == "image/png"
    chart = runs_dir() / "spend-day.png"
    assert chart.read_bytes().startswith(PNG_MAGIC)


def test_an_unknown_grouping_is_one_line(spend_db: Path) -> None:
    told, elements = asyncio.run(_say("tab-ops", "ops", "/spend week"))
    assert told == ["Try `/spend` or `/spend person|day|thread|model|gpu`."] and elements == []


@pytest.mark.parametrize("user", [None, "alice"])
def test_anybody_else_gets_one_line(user: str | None, spend_db: Path) -> None:
    fill(spend_db)
    told, elements = asyncio.run(_say("tab-" + str(user), user, "/spend"))
    assert told == [NOT_OPERATOR] and elements == []
    assert "bob" not in " ".join(told)
