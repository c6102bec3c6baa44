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
from agent.ui.continuing import continue_hint, outcome_actions
from agent.ui.landing import spend_label
from agent.ui.pending import PendingIndex, owner_key
from agent.ui.presenters import (
    approval_text,
    checks_table,
    format_tool_result,
    is_error,
    lineage_note,
    md_safe,
    num,
    outcome_text,
)
from agent.ui.tryit import offer
from tools.core.errors import AegisError
from tools.core.money import usd
from tools.core.status import Decision, JobStatus
from tools.evals.progress import EVAL_EVENT
from tools.job.state import JobState
from tools.report.approval import ApprovalRequest

log = logging.getLogger("aegis.ui")

APPROVAL_ACTION = "aegis_approval"
DECISIONS = {
    Decision.APPROVE: ("Approve", "check"),
    Decision.OPTIMIZE: ("Optimize", "wand-sparkles"),
    Decision.CANCEL: ("Cancel", "x"),
}
PROGRESS_EVERY_S = 1.0


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
        self.progress_msg: cl.Message | None = None
        self.progress_event: dict[str, Any] | None = None
        self.progress_shown_at = 0.0
        self.progress_dirty = False

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
            await cl.Message(content=md_safe(str(event["text"]))).send()
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

    async def progress(self, event: dict[str, Any]) -> None:
        """Live step, loss and ETA in one message, redrawn at most once a second."""
        if event.get("type") not in ("step", EVAL_EVENT):
            return
        if self.progress_event is not None and self.progress_event.get("type") != event.get("type"):
            await self.flush_progress(final=True)  # training's message stays; the evals get their own
        self.progress_event, self.progress_dirty = event, True
        if self.progress_msg is None:
            self.progress_msg = cl.Message(content=progress_text(event))
            await self.progress_msg.send()
            self.progress_shown_at, self.progress_dirty = time.monotonic(), False
        elif time.monotonic() - self.progress_shown_at >= PROGRESS_EVERY_S:
            await self.flush_progress()

    async def flush_progress(self, *, final: bool = False) -> None:
        if self.progress_msg is not None and self.progress_event is not None and (self.progress_dirty or final):
            self.progress_msg.content = progress_text(self.progress_event, final=final)
            await self.progress_msg.update()
            self.progress_shown_at, self.progress_dirty = time.monotonic(), False
        if final:
            self.progress_msg, self.progress_event = None, None

    async def show_approval(self, thread_id: str, req: ApprovalRequest, note: str = "") -> None:
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
        msg = cl.Message(content=md_safe(approval_text(req, note)), actions=actions)
        await msg.send()
        self.approvals[thread_id] = msg

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
            await self.show_approval(result.thread_id, result.pending, lineage_note(result.job))
            return
        PendingIndex().discard(result.thread_id)
        if result.job is not None:
            await self.show_outcome(result.job)

    async def show_outcome(self, job: JobState) -> None:
        """Once per report: the status, the loss curve, the eval checks, and the report to read and download."""
        if not job.report_path or not Path(job.report_path).is_file():
            return
        report = Path(job.report_path)
        key = (str(report), report.stat().st_mtime)
        if key in self.shown_reports:
            return
        self.shown_reports.add(key)
        text = outcome_text(job) + continue_hint(job)
        await cl.Message(content=md_safe(text), actions=outcome_actions(job)).send()
        curve = Path(job.run_dir) / "loss_curve.png"
        if job.attempts and curve.is_file():
            image = cl.Image(path=str(curve), name=f"loss_curve_{job.run_id}.png", display="inline", size="large")
            await cl.Message(content=f"Loss curve, run `{job.run_id}`", elements=[image]).send()
        if job.eval_result is not None:
            verdict = "all checks passed" if job.eval_result.passed else "some checks failed"
            table = checks_table(job.eval_result.checks)
            await cl.Message(content=md_safe(f"**Evaluation**: {verdict}\n\n{table}")).send()
        download = cl.File(path=str(report), name=f"REPORT-{job.run_id}.md", display="inline", mime="text/markdown")
        await cl.Message(content=md_safe(report.read_text(encoding="utf-8")), elements=[download]).send()
        if job.status in (JobStatus.SUCCEEDED, JobStatus.EVALS_FAILED):
            await offer(job.run_id)


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
