"""What one browser tab shows, drawn on Chainlit's event loop: tool steps, live progress, approvals, outcomes.

A turn is synchronous and may train for minutes, so ``run_turn`` runs it in a worker thread; its events come
back through a queue and are drawn here as they arrive.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chainlit as cl
from chainlit.context import local_steps
from chainlit.utils import utc_now

from agent.results import read_tool_result
from agent.session import EventFn, TurnResult
from agent.ui.cards import (
    REPORT_SUMMARY,
    SPEC_SUMMARY,
    approval_card,
    approval_details,
    compact_spec_message,
    result_card,
)
from agent.ui.continuing import continue_hint, outcome_actions
from agent.ui.landing import spend_label
from agent.ui.pending import PendingIndex, owner_key
from agent.ui.presenters import format_tool_result, is_error, lineage_note, md_safe, num
from agent.ui.tryit import try_actions
from tools.core.errors import AegisError
from tools.core.money import usd
from tools.core.status import Decision, JobStatus
from tools.evals.progress import EVAL_EVENT
from tools.job.state import JobState
from tools.policy.store import spend_store
from tools.report.approval import ApprovalRequest

log = logging.getLogger("aegis.ui")

APPROVAL_ACTION = "aegis_approval"
DECISIONS = {
    Decision.APPROVE: ("Approve", "check"),
    Decision.OPTIMIZE: ("Optimize", "wand-sparkles"),
    Decision.CANCEL: ("Cancel", "x"),
}
PROGRESS_EVERY_S = 1.0
CHART_POINTS = 400  # the live chart keeps every point up to this many, then every other one


def details(summary: str, body: str) -> cl.CustomElement:
    """A closed block under a message (public/elements/Details.jsx): one click shows the full text."""
    return cl.CustomElement(name="Details", props={"summary": summary, "body": body}, display="inline")


def _user_identifier() -> str | None:
    user = cl.context.session.user
    return str(user.identifier) if user is not None and user.identifier else None


def owner() -> str:
    """The owner key of the session this request or event belongs to, as Chainlit's server knows it."""
    return owner_key(_user_identifier(), cl.context.session.id)


def spender() -> str:
    """Whose limits a chat request spends against: the signed-in user, or one shared 'anonymous' without sign-in."""
    return _user_identifier() or "anonymous"


def decided_by() -> str:
    """Who answered, in the form the approval record accepts: person:chainlit, or person:chainlit.<user>."""
    who = _user_identifier()
    if who is None:
        return "person:chainlit"
    return "person:chainlit." + re.sub(r"[^A-Za-z0-9_.@-]", "_", who)[:64]


def _parent_id() -> str | None:
    """The step a message would nest under: tool steps join it too, so the page keeps the order of events."""
    steps = local_steps.get() or []
    return steps[-1].id if steps else None


def eval_progress_text(e: dict[str, Any], *, final: bool = False) -> str:
    """The eval phase running, its share done and the time the evals have taken so far."""
    done, total = int(e.get("done") or 0), int(e.get("total") or 0)
    share = done / total if total else 1.0
    bar = "#" * round(20 * share) + "-" * (20 - round(20 * share))
    title = "Evaluation finished" if final else "Evaluating"
    return (
        f"**{title}** run `{e.get('run_id', '')}`: {e.get('label', e.get('phase', ''))} {done}/{total} `{bar}`"
        f"\n\n{float(e.get('elapsed_s') or 0):.0f} s so far"
    )


def progress_text(e: dict[str, Any], *, final: bool = False) -> str:
    """Live step, loss and ETA of a training progress event (or the evals' phase, for their events)."""
    if e.get("type") == EVAL_EVENT:
        return eval_progress_text(e, final=final)
    step, total = int(e.get("step") or 0), int(e.get("total_steps") or 0)
    share = step / total if total else 0.0
    bar = "#" * round(20 * share) + "-" * (20 - round(20 * share))
    title = "Training finished" if final else "Training"
    eta = "" if final else f" · ETA {float(e.get('eta_s') or 0):.0f} s"
    return (
        f"**{title}** run `{e.get('run_id', '')}`: step {step}/{total or '?'} `{bar}` {share:.0%}\n\n"
        f"loss **{num(e.get('loss'))}** · {num(e.get('tokens_per_s'), '.0f')} tokens/s{eta}"
    )


class ChatView:
    """What one browser tab shows: open tool steps, the live progress message, the approvals on screen."""

    def __init__(self) -> None:
        self.thread_id: str | None = None
        self.steps: dict[str, cl.Step] = {}
        self.tool_names: dict[str, str] = {}
        self.approvals: dict[str, cl.Message] = {}
        self.shown_reports: set[tuple[str, float]] = set()
        self.approval_keys: dict[str, tuple[str, str]] = {}
        self.progress_msg: cl.Message | None = None
        self.progress_event: dict[str, Any] | None = None
        self.progress_shown_at = 0.0
        self.progress_dirty = False
        self.chart: cl.CustomElement | None = None
        self.asked = ""

    @staticmethod
    def current() -> ChatView:
        view = cl.user_session.get("view")
        if view is None:
            view = ChatView()
            cl.user_session.set("view", view)
        return view

    async def show_event(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "progress":
            await self.progress(event)
            return
        await self.flush_progress(final=True)
        if kind == "message" and event.get("text"):
            await self.say(str(event["text"]))
        elif kind == "tool_call":
            step = cl.Step(name=str(event["name"]), type="tool", show_input="json", parent_id=_parent_id())
            step.input = event.get("args") or {}
            await step.send()
            self.steps[str(event["id"])] = step
            self.tool_names[str(event["id"])] = str(event["name"])
        elif kind == "tool_result":
            await self.tool_result(str(event.get("id")), str(event.get("text", "")), event.get("name"))

    async def tool_result(self, call_id: str, text: str, name: str | None = None) -> None:
        """Close the tool's step with its typed result, read back from the ToolMessage's JSON."""
        name = self.tool_names.pop(call_id, None) or name
        result = read_tool_result(text, name)
        step = self.steps.pop(call_id, None)
        if step is None:  # its call was drawn before a reload, or in another tab
            step = cl.Step(name=str(result.tool), type="tool", parent_id=_parent_id())
            await step.send()
        step.output = md_safe(format_tool_result(result))
        step.is_error = is_error(result)
        step.end = utc_now()
        await step.update()

    async def say(self, text: str) -> None:
        """An agent message; a spec it prints in full goes behind a link, since the approval card names it."""
        shown, spec = compact_spec_message(text)
        elements = [details(SPEC_SUMMARY, spec)] if spec else []
        await cl.Message(content=md_safe(shown), elements=elements).send()

    async def progress(self, event: dict[str, Any]) -> None:
        """Live step, loss and ETA in one message with a loss chart under it, redrawn at most once a second."""
        if event.get("type") not in ("step", EVAL_EVENT):
            return
        if self.progress_event is not None and self.progress_event.get("type") != event.get("type"):
            await self.flush_progress(final=True)  # training's message stays; the evals get their own
        self.progress_event, self.progress_dirty = event, True
        if event.get("type") == "step" and isinstance(event.get("loss"), int | float):
            self._add_point(int(event.get("step") or 0), float(event["loss"]), event.get("total_steps"))
        if self.progress_msg is None:
            elements = [self.chart] if self.chart is not None and event.get("type") == "step" else []
            self.progress_msg = cl.Message(content=progress_text(event), elements=elements)
            await self.progress_msg.send()
            self.progress_shown_at, self.progress_dirty = time.monotonic(), False
        elif time.monotonic() - self.progress_shown_at >= PROGRESS_EVERY_S:
            await self.flush_progress()

    def _add_point(self, step: int, loss: float, total: Any) -> None:
        """One more point of the live chart (a new chart for each training message)."""
        if self.chart is None:
            self.chart = cl.CustomElement(name="LossChart", props={"points": []}, display="inline")
        points = self.chart.props["points"]
        points.append([step, loss])
        if len(points) > CHART_POINTS:
            del points[1:-1:2]
        self.chart.props["total"] = int(total) if isinstance(total, int | float) else None

    async def flush_progress(self, *, final: bool = False) -> None:
        if self.progress_msg is not None and self.progress_event is not None and (self.progress_dirty or final):
            self.progress_msg.content = progress_text(self.progress_event, final=final)
            await self.progress_msg.update()
            if self.chart is not None and self.chart.for_id == self.progress_msg.id:
                await self.chart.update()
            self.progress_shown_at, self.progress_dirty = time.monotonic(), False
        if final:
            self.progress_msg, self.progress_event = None, None
            self.chart = None

    async def show_approval(self, thread_id: str, req: ApprovalRequest, note: str = "") -> None:
        """The compact card: why, what was asked, what Aegis chose, the money; every field behind the link."""
        PendingIndex().add(thread_id, owner())
        actions = [
            cl.Action(
                name=APPROVAL_ACTION,
                payload={"thread_id": thread_id, "spec_hash": req.spec_hash, "decision": decision.value},
                label=spend_label(decision, req)[0],
                icon=spend_label(decision, req)[1],
                tooltip=f"{label} run {req.run_id} at {usd(req.estimated_cost_usd)}",
            )
            for decision, (label, _icon) in DECISIONS.items()
            if decision in req.options
        ]
        block = details(SPEC_SUMMARY, approval_details(req))
        msg = cl.Message(content=md_safe(approval_card(req, self.asked, note)), actions=actions, elements=[block])
        await msg.send()
        self.approvals[thread_id] = msg
        self.approval_keys[thread_id] = (req.run_id, req.spec_hash)

    def _card_on_screen(self, thread_id: str, req: ApprovalRequest) -> bool:
        """Whether this very request's card is already shown with its buttons (not answered, not replaced)."""
        return thread_id in self.approvals and self.approval_keys.get(thread_id) == (req.run_id, req.spec_hash)

    async def close_approval(self, thread_id: str, note: str) -> None:
        msg = self.approvals.pop(thread_id, None)
        if msg is not None:
            await msg.remove_actions()
            msg.actions = []
            msg.content += f"\n\n{note}"
            await msg.update()

    async def show_result(self, result: TurnResult) -> None:
        self.thread_id = result.thread_id
        if result.pending is not None:
            if not self._card_on_screen(result.thread_id, result.pending):  # a read-only answer beside the pause
                await self.show_approval(result.thread_id, result.pending, lineage_note(result.job))
            return
        PendingIndex().discard(result.thread_id)
        if result.job is not None:
            await self.show_outcome(result.job)

    async def show_outcome(self, job: JobState) -> None:
        """Once per report, one card: the figures, the loss chart, Try it, Continue, and the report behind a link."""
        if not job.report_path or not Path(job.report_path).is_file():
            return
        report = Path(job.report_path)
        key = (str(report), report.stat().st_mtime)
        if key in self.shown_reports:
            return
        self.shown_reports.add(key)
        spent = sum(a.captured_usd or 0.0 for a in spend_store().attempts(job_id=job.run_id))
        text = result_card(job, spent)
        if job.status in (JobStatus.CANCELLED, JobStatus.REFUSED):
            await cl.Message(content=text).send()
            return
        elements: list[cl.Element] = [
            details(REPORT_SUMMARY, report.read_text(encoding="utf-8")),
            cl.File(path=str(report), name=f"REPORT-{job.run_id}.md", display="inline", mime="text/markdown"),
        ]
        curve = Path(job.run_dir) / "loss_curve.png"
        if job.attempts and curve.is_file():
            elements.insert(
                0, cl.Image(path=str(curve), name=f"loss_curve_{job.run_id}.png", display="inline", size="large")
            )
        actions = outcome_actions(job) + try_actions(job)
        await cl.Message(content=text + continue_hint(job), elements=elements, actions=actions).send()


async def _say(text: str) -> None:
    await cl.Message(content=md_safe(text)).send()


async def run_turn(call: Callable[[EventFn], TurnResult], view: ChatView, thread_id: str) -> None:
    """Run one agent turn off the loop, drawing its events as they come; errors become plain messages.

    A pause is indexed from the worker itself, so an approval reached after the tab closed is still found.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    who = owner()

    def on_event(event: dict[str, Any]) -> None:
        if event.get("kind") == "approval":
            PendingIndex().add(thread_id, who)
        loop.call_soon_threadsafe(queue.put_nowait, event)

    worker = asyncio.ensure_future(asyncio.to_thread(call, on_event))
    worker.add_done_callback(lambda _: queue.put_nowait(None))
    while (event := await queue.get()) is not None:
        try:
            await view.show_event(event)
        except Exception:  # a drawing problem must not lose the rest of the turn
            log.exception("could not show event %s", event.get("kind"))
    await view.flush_progress(final=True)
    try:
        result = worker.result()
    except AegisError as exc:
        await _say(str(exc))
        return
    except Exception as exc:
        log.exception("agent turn failed")
        await cl.Message(
            content=f"Something went wrong: `{type(exc).__name__}: {exc}`. Nothing more was done for this request; "
            "the details are in the server log."
        ).send()
        return
    try:
        await view.show_result(result)
    except AegisError as exc:
        await _say(str(exc))
