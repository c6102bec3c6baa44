"""`/spend` in the chat: the operator's spend report (the same figures as `aegis spend`) and its chart.

Only signed-in people named in AEGIS_UI_OPERATORS see it: it names other people's spending. An anonymous tab,
or anybody else, is told in one line that the report is for operators.
"""

from __future__ import annotations

import asyncio

import chainlit as cl

from agent.ui.presenters import md_safe
from tools.core.errors import AegisError
from tools.core.money import usd
from tools.core.paths import runs_dir
from tools.core.settings import settings
from tools.policy.spend_report import GroupBy, SpendReport, build_report
from tools.policy.store import spend_store
from tools.report.spend_chart import plot_spend

SPEND_COMMAND = "/spend"
NOT_OPERATOR = "The spend report is for operators (AEGIS_UI_OPERATORS); `aegis spend` shows it on the server."


def is_spend_command(text: str) -> bool:
    """'/spend' or '/spend day': the report, not a request for the agent."""
    words = text.strip().lower().split()
    return bool(words) and words[0] == SPEND_COMMAND


def _group_by(text: str) -> GroupBy | None:
    """How '/spend', '/spend day' … groups (by person when unsaid); None when the word is not a grouping."""
    words = text.strip().lower().split()[1:]
    if not words:
        return GroupBy.PERSON
    return GroupBy(words[0]) if len(words) == 1 and words[0] in {g.value for g in GroupBy} else None


def is_operator(identifier: str | None) -> bool:
    """A signed-in person the operator named; never an anonymous tab, whatever the list says."""
    named = {name.strip() for name in settings().ui_operators.split(",") if name.strip()}
    return identifier is not None and identifier in named


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def spend_text(report: SpendReport) -> str:
    """The report as Markdown: the table `aegis spend` prints, then each limit and the brake."""
    head = f"| {report.by.value.capitalize()} | Captured (billed) | Held (running) | Refused |\n|---|---:|---:|---:|\n"
    rows = "".join(
        f"| `{_cell(g.group)}` | {usd(g.captured_usd)} | {usd(g.held_usd)} | {usd(g.refused_usd)} |\n"
        for g in report.groups
    )
    t = report.totals
    rows += f"| **total** | **{usd(t.captured_usd)}** | **{usd(t.held_usd)}** | **{usd(t.refused_usd)}** |\n"
    limits = "".join(f"- {line}\n" for line in report.limit_lines())
    return (
        f"**Spend by {report.by.value} since {report.since.isoformat()}** (UTC; `aegis spend` on the server)\n\n"
        + head
        + rows
        + f"\n**Limits**\n\n{limits}\n**Brake:** {report.brake_line()}"
    )


def spend_report(by: GroupBy, viewer: str) -> SpendReport:
    """The report from the store now, with its chart written beside the runs."""
    report = build_report(spend_store(), by, viewer=viewer)
    chart = plot_spend(report, runs_dir() / f"spend-{by.value}.png")
    return report.model_copy(update={"chart": str(chart)})


async def show_spend(text: str) -> None:
    """The report for an operator, one line for anybody else: it names other people's spending."""
    user = cl.context.session.user
    identifier = str(user.identifier) if user is not None and user.identifier else None
    if not is_operator(identifier):
        await cl.Message(content=NOT_OPERATOR).send()
        return
    by = _group_by(text)
    if by is None:
        await cl.Message(content=f"Try `/spend` or `/spend {'|'.join(g.value for g in GroupBy)}`.").send()
        return
    try:
        report = await asyncio.to_thread(spend_report, by, identifier or "")
    except (AegisError, OSError) as exc:
        await cl.Message(content=md_safe(f"The spend report could not be made: {exc}")).send()
        return
    image = cl.Image(path=report.chart, name=f"spend-{by.value}.png", display="inline")
    await cl.Message(content=md_safe(spend_text(report)), elements=[image]).send()
