"""The Chainlit chat UI (`aegis ui`): the same agent, model choice and checkpointer as the CLI, in a browser.

A turn is synchronous and may train for minutes, so it runs in a worker thread; its events come back
through a queue and are drawn here, on the event loop, as tool steps, live progress and messages.
Approvals are buttons bound to the thread and the spec hash, and owned by whoever asked: an anonymous
tab, or a signed-in person in any of their tabs. Nobody else sees or answers them, whatever a request's
payload says, and the agent session refuses a second answer. At import, before the server takes a request,
the app refuses to serve beyond loopback without sign-in and refuses every request from a foreign origin.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chainlit as cl
from chainlit.config import config as chainlit_config
from chainlit.context import local_steps
from chainlit.server import app as server_app
from chainlit.utils import utc_now
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.approval import ApprovalAnswer, ApprovalRequest
from agent.session import AgentSession, EventFn, TurnResult
from agent.ui_command import USERS_VAR, allowed_origins, check_access, password_ok
from tools.core.errors import AegisError
from tools.core.paths import runs_dir
from tools.core.runlog import new_run_id
from tools.job.steps import JobState

log = logging.getLogger("aegis.ui")

APPROVAL_ACTION = "aegis_approval"
DECISIONS = {"approve": ("Approve", "check"), "optimize": ("Optimize", "wand-sparkles"), "cancel": ("Cancel", "x")}
PROGRESS_EVERY_S = 1.0
# Threads whose answer is being carried out right now, in any tab of this server (touched on the loop only).
_ANSWERING: set[str] = set()
# Resumed turns run as tasks so the button's HTTP call returns at once; kept here so they are not collected.
_TASKS: set[asyncio.Task[None]] = set()


@functools.cache
def agent_session() -> AgentSession:
    """One agent per server: AEGIS_MODEL picks the model, runs_dir() holds the checkpointer, as in the CLI."""
    return AgentSession()


class PendingIndex:
    """Which owner (see `owner_key`) a paused thread belongs to: the server's record of who may answer it.

    Chainlit keeps no threads without a data layer; this small table beside the checkpointer does.
    """

    def __init__(self, path: Path | None = None):
        self.path = path or runs_dir() / "ui_threads.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS pending (thread_id TEXT PRIMARY KEY, owner TEXT, updated REAL)")

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(str(self.path), timeout=10)

    def add(self, thread_id: str, owner: str) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO pending VALUES (?, ?, ?)", (thread_id, owner, time.time()))

    def discard(self, thread_id: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM pending WHERE thread_id = ?", (thread_id,))

    def threads(self, owner: str) -> list[str]:
        with self._db() as db:
            rows = db.execute("SELECT thread_id FROM pending WHERE owner = ? ORDER BY updated DESC", (owner,))
            return [row[0] for row in rows]

    def owner_of(self, thread_id: str) -> str | None:
        with self._db() as db:
            row = db.execute("SELECT owner FROM pending WHERE thread_id = ?", (thread_id,)).fetchone()
            return None if row is None else str(row[0])


def owner_key(user_identifier: str | None, session_id: str) -> str:
    """Whose an approval is: a signed-in person's, in all their tabs; else the one session (tab) that asked.

    Without sign-in every browser is alike, so only the Chainlit session tells one client from another.
    """
    return f"user/{user_identifier}" if user_identifier else f"anonymous/{session_id}"


def _user_identifier() -> str | None:
    user = cl.context.session.user
    return str(user.identifier) if user is not None and user.identifier else None


def owner() -> str:
    """The owner key of the session this request or event belongs to, as Chainlit's server knows it."""
    return owner_key(_user_identifier(), cl.context.session.id)


def decided_by() -> str:
    """Who answered, in the form the approval record accepts: person:chainlit, or person:chainlit.<user>."""
    who = _user_identifier()
    if who is None:
        return "person:chainlit"
    return "person:chainlit." + re.sub(r"[^A-Za-z0-9_.@-]", "_", who)[:64]


class OriginGuard:
    """Refuse any HTTP request or websocket that a page from another origin sends.

    Chainlit's socket server accepts every origin, so without this any web page could connect to the chat
    and press its buttons; browsers always send Origin on websockets and on requests that change something.
    """

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = Headers(scope=scope).get("origin") if scope["type"] in ("http", "websocket") else None
        if origin is None or origin.rstrip("/") in self.allowed:
            await self.app(scope, receive, send)
            return
        log.warning("refused a %s request from origin %r", scope["type"], origin[:200])
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await PlainTextResponse("This origin may not use the Aegis-ML chat.", status_code=403)(scope, receive, send)


async def sign_in(name: str, password: str) -> cl.User | None:
    """Chainlit's password sign-in, against the AEGIS_UI_USERS file; the password is never logged."""
    try:
        ok = await asyncio.to_thread(password_ok, Path(os.environ[USERS_VAR]), name, password)
    except AegisError as exc:
        log.error("sign-in refused: %s", exc)
        return None
    if not ok:
        log.warning("failed sign-in for %r", name[:64])
        return None
    return cl.User(identifier=name, metadata={"provider": "aegis-ui-users"})


def secure_server() -> None:
    """Who may reach this server, settled before it takes a request.

    `chainlit run` imports chainlit.server before this module, but Starlette builds the middleware stack at
    the first request, so the guard added here wraps every route and the socket.io mount.
    """
    host, port = chainlit_config.run.host, int(chainlit_config.run.port)
    check_access(host, os.environ)
    server_app.add_middleware(OriginGuard, allowed=frozenset(allowed_origins(host, port, os.environ)))
    if os.environ.get(USERS_VAR):
        cl.password_auth_callback(sign_in)


secure_server()


_DIRECTIVE = re.compile(r":(?=[A-Za-z])")


def md_safe(text: str) -> str:
    """Escape ``:word`` outside code: Chainlit's Markdown reads it as a directive and drops it ("person:chainlit")."""
    lines, fenced = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced:
            parts = line.split("`")
            line = "`".join(part if i % 2 else _DIRECTIVE.sub(r"\\:", part) for i, part in enumerate(parts))
        lines.append(line)
    return "\n".join(lines)


def usd(value: float | None) -> str:
    """Dollars with enough digits that a tiny estimate or soft limit does not print as $0.00."""
    if value is None:
        return "—"
    return f"${value:,.2f}" if value == 0 or abs(value) >= 1 else f"${value:.4f}"


def _num(value: Any, fmt: str = ".4f") -> str:
    return format(value, fmt) if isinstance(value, int | float) else "—"


def estimate_table(p: dict[str, Any]) -> str:
    """The estimate against the budget limits, as the person will judge it."""
    fits = "fits" if p.get("fits") else "**does not fit**"
    gpus = f"{p.get('num_gpus', 1)}× " if (p.get("num_gpus") or 1) > 1 else ""
    rows = [
        "| | Estimate | Limit |",
        "|---|---|---|",
        f"| Cost | **{usd(p.get('estimated_cost_usd'))}** | soft {usd(p.get('soft_threshold_usd'))} · "
        f"hard {usd(p.get('max_budget_usd'))} (spent {usd(p.get('spent_usd', 0.0))}) |",
        f"| Time | {_num(p.get('estimated_duration_min'), '.1f')} min | |",
        f"| GPU memory | {_num(p.get('estimated_vram_gb'), '.2f')} GB | {gpus}{p.get('gpu')} "
        f"{_num(p.get('gpu_memory_gb'), '.0f')} GB: {fits} |",
    ]
    if p.get("total_steps") is not None:
        rows.append(f"| Steps | {p['total_steps']} | |")
    if p.get("dataset_rows") is not None:
        rows.append(f"| Data | {p['dataset_rows']} rows, {p.get('dataset_tokens', '—')} tokens | |")
    if p.get("trainable_params") is not None:
        rows.append(f"| Trainable parameters | {p['trainable_params']:,} of {p.get('total_params', 0):,} | |")
    notes = "".join(f"\n- {note}" for note in p.get("notes") or [])
    return "\n".join(rows) + notes + preflight_text(p.get("preflight"))


def preflight_text(preflight: dict[str, Any] | None) -> str:
    """The free checks run before any money is asked for, one line each."""
    if not preflight:
        return ""
    head = "passed" if preflight.get("passed") else "**failed**: nothing will be asked for or spent"
    lines = "".join(
        f"\n- {c['name']}: {'**FAIL** ' if c['status'] == 'fail' else c['status'] + ' '}— {c['detail']}"
        for c in preflight.get("checks", [])
    )
    return f"\n\n**Pre-flight** {head}{lines}"


def checks_table(checks: list[dict[str, Any]]) -> str:
    rows = ["| Check | Result | Value | Threshold | Detail |", "|---|---|---|---|---|"]
    for c in checks:
        mark = "pass" if c.get("passed") else "**FAIL**"
        value, threshold = c.get("value"), c.get("threshold")
        rows.append(
            f"| {c.get('name')} | {mark} | {'' if value is None else value} | "
            f"{'' if threshold is None else threshold} | {str(c.get('detail', '')).replace('|', '/')} |"
        )
    return "\n".join(rows)


def format_tool_result(name: str, p: dict[str, Any]) -> str:
    """A tool's JSON result as something a person reads: tables for the estimate, the run and the checks."""
    status = p.get("status", "")
    head = f"**{status}**" + (f": {p['message']}" if p.get("message") and p.get("message") != status else "")
    if not p.get("ok") and status in ("refused", "error"):
        return head
    if status == "preflight_failed":
        return f"{head}{preflight_text(p.get('preflight'))}"
    if "estimated_cost_usd" in p:
        return f"{head}\n\n{estimate_table(p)}"
    if name in ("run_local", "run_on_modal"):
        if not p.get("ok"):
            return f"{head}\n\n{p.get('failure_class')}: {p.get('error') or 'no error text'}"
        return (
            f"{head}\n\n| Metric | Value |\n|---|---|\n"
            f"| Train loss | {_num(p.get('initial_train_loss'))} → {_num(p.get('final_train_loss'))} |\n"
            f"| Eval loss | {_num(p.get('initial_eval_loss'))} → {_num(p.get('final_eval_loss'))} |\n"
            f"| Steps | {p.get('steps')} in {_num(p.get('duration_s'), '.0f')} s |\n"
            f"| Throughput | {_num(p.get('tokens_per_s'), '.0f')} tokens/s |\n"
            f"| Peak memory | {_num(p.get('peak_memory_mb'), '.0f')} MB |\n"
            f"| Actual cost | {usd(p.get('actual_cost_usd'))} (spent {usd(p.get('spent_usd'))}) |"
        )
    if name == "run_evals" and "checks" in p:
        return f"{head}\n\n{checks_table(p['checks'])}"
    if name == "render_script" and "script_path" in p:
        return f"{head}\n\n- script: `{p['script_path']}`\n- config: `{p.get('config_path')}`"
    if p.get("decided_by"):
        return f"{head}\n\ndecided by `{p['decided_by']}`"
    skip = {"tool", "run_id", "report_path", "ok", "status", "message"}
    rest = {k: v for k, v in p.items() if k not in skip}
    return head + (f"\n\n```json\n{json.dumps(rest, indent=2, default=str)}\n```" if rest else "")


def approval_text(req: ApprovalRequest) -> str:
    spec = req.spec
    steps = f" · max {spec['max_steps']} steps" if spec.get("max_steps") else ""
    fits = "fits" if req.fits else "**does not fit**"
    return (
        f"### Approval needed: run `{req.run_id}`\n{req.reason}\n\n"
        "| | Estimate | Limit |\n|---|---|---|\n"
        f"| Cost | **{usd(req.estimated_cost_usd)}** | soft {usd(req.soft_threshold_usd)} · "
        f"hard {usd(req.max_budget_usd)} (spent {usd(req.spent_usd)}) |\n"
        f"| Time | {req.estimated_duration_min:.1f} min | |\n"
        f"| GPU memory | {req.estimated_vram_gb:.2f} GB | {req.gpu}: {fits} |\n\n"
        f"**Spec** `{req.spec_hash}`: {spec.get('method')} of `{spec.get('model_name')}` on "
        f"`{spec.get('dataset_path')}` · {spec.get('num_epochs')} epoch(s){steps} · batch "
        f"{spec.get('micro_batch_size')}×{spec.get('gradient_accumulation_steps')} · lr {spec.get('learning_rate')} · "
        f"seq_len {spec.get('seq_len')} · {spec.get('num_gpus')}× {spec.get('target_gpu')}\n\n"
        f"{worst_case_text(req)}"
        "An approval holds for exactly this spec and estimate. **Optimize** proposes a cheaper spec, "
        "which comes back here."
    )


def worst_case_text(req: ApprovalRequest) -> str:
    """Every attempt the healing rules allow, priced, and what one attempt can bill before its time limit."""
    if req.worst_case_usd is None:
        return ""
    rows = ["| Attempt | What changes | Cost | Time |", "|---|---|---|---|"]
    for a in req.attempts:
        rows.append(
            f"| {a['attempt']} | {a['rule']} | {usd(a['estimated_cost_usd'])} | {a['estimated_minutes']:.1f} min |"
        )
    allows = req.retries_budget_allows
    limit = (
        f" Each attempt stops after {req.timeout_s / 60:.0f} min, so one attempt bills at most "
        f"{usd(req.max_attempt_cost_usd)}."
        if req.timeout_s is not None
        else ""
    )
    return (
        f"**Worst case** (every attempt fails but the last): **{usd(req.worst_case_usd)}** · {req.dtype} · "
        f"{req.num_gpus} GPU(s); the remaining budget allows {allows} retr{'y' if allows == 1 else 'ies'}.{limit}\n\n"
        + "\n".join(rows)
        + "\n\n"
    )


def _parent_id() -> str | None:
    """The step a message would nest under: tool steps join it too, so the page keeps the order of events."""
    steps = local_steps.get() or []
    return steps[-1].id if steps else None


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
            await self.tool_result(str(event.get("id")), str(event.get("text", "")))

    async def tool_result(self, call_id: str, text: str) -> None:
        try:
            payload = json.loads(text)
        except json.JSONDecodeError:
            payload = {"ok": False, "status": "error", "message": text}
        if not isinstance(payload, dict):
            payload = {"ok": True, "status": "done", "message": str(payload)}
        name = self.tool_names.pop(call_id, None) or str(payload.get("tool", "tool")).lstrip("_")
        step = self.steps.pop(call_id, None)
        if step is None:  # its call was drawn before a reload, or in another tab
            step = cl.Step(name=name, type="tool", parent_id=_parent_id())
            await step.send()
        step.output = md_safe(format_tool_result(name, payload))
        step.is_error = not payload.get("ok") and payload.get("status") in ("refused", "error", "failed")
        step.end = utc_now()
        await step.update()

    async def progress(self, event: dict[str, Any]) -> None:
        """Live step, loss and ETA in one message, redrawn at most once a second."""
        if event.get("type") != "step":
            return
        self.progress_event, self.progress_dirty = event, True
        if self.progress_msg is None:
            self.progress_msg = cl.Message(content=self._progress_text(event))
            await self.progress_msg.send()
            self.progress_shown_at, self.progress_dirty = time.monotonic(), False
        elif time.monotonic() - self.progress_shown_at >= PROGRESS_EVERY_S:
            await self.flush_progress()

    async def flush_progress(self, *, final: bool = False) -> None:
        if self.progress_msg is not None and self.progress_event is not None and (self.progress_dirty or final):
            self.progress_msg.content = self._progress_text(self.progress_event, final=final)
            await self.progress_msg.update()
            self.progress_shown_at, self.progress_dirty = time.monotonic(), False
        if final:
            self.progress_msg, self.progress_event = None, None

    @staticmethod
    def _progress_text(e: dict[str, Any], *, final: bool = False) -> str:
        step, total = int(e.get("step") or 0), int(e.get("total_steps") or 0)
        share = step / total if total else 0.0
        bar = "#" * round(20 * share) + "-" * (20 - round(20 * share))
        title = "Training finished" if final else "Training"
        eta = "" if final else f" · ETA {float(e.get('eta_s') or 0):.0f} s"
        return (
            f"**{title}** run `{e.get('run_id', '')}`: step {step}/{total or '?'} `{bar}` {share:.0%}\n\n"
            f"loss **{_num(e.get('loss'))}** · {_num(e.get('tokens_per_s'), '.0f')} tokens/s{eta}"
        )

    async def show_approval(self, thread_id: str, req: ApprovalRequest) -> None:
        PendingIndex().add(thread_id, owner())
        actions = [
            cl.Action(
                name=APPROVAL_ACTION,
                payload={"thread_id": thread_id, "spec_hash": req.spec_hash, "decision": decision},
                label=label,
                icon=icon,
                tooltip=f"{label} run {req.run_id} at {usd(req.estimated_cost_usd)}",
            )
            for decision, (label, icon) in DECISIONS.items()
            if decision in req.options
        ]
        msg = cl.Message(content=md_safe(approval_text(req)), actions=actions)
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
            await self.show_approval(result.thread_id, result.pending)
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
        await cl.Message(content=md_safe(outcome_text(job))).send()
        curve = Path(job.run_dir) / "loss_curve.png"
        if job.attempts and curve.is_file():
            image = cl.Image(path=str(curve), name=f"loss_curve_{job.run_id}.png", display="inline", size="large")
            await cl.Message(content=f"Loss curve, run `{job.run_id}`", elements=[image]).send()
        if job.eval_result is not None:
            checks = [c.model_dump(mode="json") for c in job.eval_result.checks]
            verdict = "all checks passed" if job.eval_result.passed else "some checks failed"
            await cl.Message(content=md_safe(f"**Evaluation**: {verdict}\n\n{checks_table(checks)}")).send()
        download = cl.File(path=str(report), name=f"REPORT-{job.run_id}.md", display="inline", mime="text/markdown")
        await cl.Message(content=md_safe(report.read_text(encoding="utf-8")), elements=[download]).send()


def outcome_text(job: JobState) -> str:
    spent = usd(job.ledger.spent_usd)
    who = f" by `{job.decided_by}`" if job.decided_by else ""
    if job.status == "cancelled":
        return f"**Cancelled**{who}: run `{job.run_id}` was not trained and nothing was spent."
    if job.status == "refused":
        reason = job.gate.reason if job.gate else "over the budget"
        return f"**Refused by the gate**: {reason}. Run `{job.run_id}` was not trained and nothing was spent."
    if job.status == "succeeded":
        return f"**Run `{job.run_id}` succeeded** (approved{who}); spent {spent}. The report is below."
    last = job.attempts[-1] if job.attempts else None
    why = f" ({last.failure_class}: {last.error_message})" if last is not None and last.failure_class else ""
    return f"**Run `{job.run_id}` {job.status}**{why}; spent {spent}. The report is below."


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
        await cl.Message(content=md_safe(str(exc))).send()
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
        await cl.Message(content=md_safe(str(exc))).send()


@cl.on_chat_start
async def on_chat_start() -> None:
    """Show the approvals still waiting for this owner: a signed-in person's, after a reload or in a new tab."""
    view = ChatView.current()
    session = agent_session()
    index = PendingIndex()
    for thread_id in index.threads(owner()):
        try:
            pending = await asyncio.to_thread(session.pending, thread_id)
        except Exception:
            log.exception("could not read thread %s", thread_id)
            pending = None
        if pending is None:
            index.discard(thread_id)
            continue
        if view.thread_id is None:
            view.thread_id = thread_id
        await cl.Message(content=f"Run `{pending.run_id}` is still waiting for an answer.").send()
        await view.show_approval(thread_id, pending)


@cl.on_message
async def on_message(message: cl.Message) -> None:
    view = ChatView.current()
    session = agent_session()
    thread_id = view.thread_id or new_run_id()
    await run_turn(
        lambda on_event: session.send(message.content, thread_id=thread_id, on_event=on_event), view, thread_id
    )


@cl.action_callback(APPROVAL_ACTION)
async def on_approval(action: cl.Action) -> None:
    """A person's answer at the gate, carried to the paused LangGraph thread at most once, by its owner only.

    The payload comes from the client, so only the server's index says whose the thread is. The checks here
    give a clear message early; AgentSession.resume repeats the rest under its thread lock.
    """
    view = ChatView.current()
    thread_id, spec_hash = str(action.payload.get("thread_id", "")), str(action.payload.get("spec_hash", ""))
    decision = str(action.payload.get("decision", ""))
    if decision not in DECISIONS or PendingIndex().owner_of(thread_id) != owner():
        await view.close_approval(thread_id, "_No longer waiting: already answered._")
        await cl.Message(content="That approval is not waiting any more (already answered, or not yours).").send()
        return
    if thread_id in _ANSWERING:
        await cl.Message(content="That approval is already being answered, in this tab or another one.").send()
        return
    session = agent_session()
    pending = await asyncio.to_thread(session.pending, thread_id)
    if pending is None or pending.spec_hash != spec_hash:
        await view.close_approval(thread_id, "_No longer valid._")
        if pending is None:
            PendingIndex().discard(thread_id)
            await cl.Message(content="That approval was already answered; nothing was done twice.").send()
        else:
            await cl.Message(content="The spec changed since that approval was shown; here is the current one.").send()
            await view.show_approval(thread_id, pending)
        return
    _ANSWERING.add(thread_id)
    who = decided_by()
    await view.close_approval(thread_id, f"**Decision:** {decision} by `{who}`")
    await cl.Message(content=f"**{DECISIONS[decision][0]}** by `{who}`.").send()
    view.thread_id = thread_id
    answer = ApprovalAnswer(decision=decision, decided_by=who, request_id=pending.request_id)  # type: ignore[arg-type]
    task = asyncio.create_task(_resume(session, view, thread_id, answer, spec_hash))
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


async def _resume(
    session: AgentSession, view: ChatView, thread_id: str, answer: ApprovalAnswer, spec_hash: str
) -> None:
    await cl.context.emitter.task_start()
    try:
        await run_turn(
            lambda on_event: session.resume(thread_id, answer, spec_hash=spec_hash, on_event=on_event), view, thread_id
        )
    finally:
        _ANSWERING.discard(thread_id)
        await cl.context.emitter.task_end()
