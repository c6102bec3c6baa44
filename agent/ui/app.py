"""The Chainlit chat app (`aegis ui` runs `chainlit run` on this file): the same agent, model choice and
checkpointer as the CLI, in a browser.

Approvals are buttons bound to the thread and the spec hash, and owned by whoever asked: an anonymous tab, or
a signed-in person in any of their tabs. Nobody else sees or answers them, whatever a request's payload says,
and the agent session refuses a second answer. At import, before the server takes a request, the app refuses
to serve beyond loopback without sign-in and refuses every request from a foreign origin.
"""

from __future__ import annotations

import asyncio
import functools
import logging

import chainlit as cl
from chainlit.config import config as chainlit_config
from chainlit.server import app as server_app

from agent.session import AgentSession
from agent.ui.access import password_ok, served_origins
from agent.ui.continuing import CONTINUE_ACTION, NOT_SHOWN, was_offered_continue
from agent.ui.guard import OriginGuard
from agent.ui.history import ThreadIndex
from agent.ui.landing import starters
from agent.ui.pending import PendingIndex
from agent.ui.presenters import md_safe
from agent.ui.runs_page import (
    COMPARE_ACTION,
    PAGE_ACTION,
    on_compare,
    on_page,
    parse_compare_command,
    parse_runs_command,
    show_comparison,
    show_runs,
)
from agent.ui.spend import is_spend_command, show_spend
from agent.ui.tryit import TRY_ACTION, on_try
from agent.ui.views import APPROVAL_ACTION, DECISIONS, ChatView, decided_by, owner, run_turn, spender
from agent.ui.wording import watermark_for
from tools.core.errors import AegisError
from tools.core.runlog import new_run_id
from tools.core.settings import settings
from tools.core.status import Decision
from tools.report.approval import ApprovalAnswer

log = logging.getLogger("aegis.ui")

# Threads whose answer is being carried out right now, in any tab of this server (touched on the loop only).
_ANSWERING: set[str] = set()
# Resumed turns run as tasks so the button's HTTP call returns at once; kept here so they are not collected.
_TASKS: set[asyncio.Task[None]] = set()


@functools.cache
def agent_session() -> AgentSession:
    """One agent per server: AEGIS_MODEL picks the model, runs_dir() holds the checkpointer, as in the CLI."""
    return AgentSession()


async def sign_in(name: str, password: str) -> cl.User | None:
    """Chainlit's password sign-in, against the AEGIS_UI_USERS file; the password is never logged."""
    try:
        users = settings().ui_users
        ok = users is not None and await asyncio.to_thread(password_ok, users, name, password)
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
    server_app.add_middleware(OriginGuard, allowed=frozenset(served_origins(host, port)))
    if settings().ui_users:
        cl.password_auth_callback(sign_in)


secure_server()
watermark_for(chainlit_config)


@cl.set_starters
async def set_starters(user: cl.User | None = None, language: str | None = None) -> list[cl.Starter]:
    """The landing page: what to type, from the demo to a GPU estimate and the budget refusing."""
    return starters()


@cl.on_chat_start
async def on_chat_start() -> None:
    """Show the approvals still waiting for this owner: a signed-in person's, after a reload or in a new tab."""
    view = ChatView.current()
    session = agent_session()
    await restore_history(view, session)
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


async def restore_history(view: ChatView, session: AgentSession) -> None:
    """A signed-in person's newest conversation, shown again after a reload or in a new tab, and carried on."""
    thread_id = ThreadIndex().latest(owner())
    if thread_id is None:
        return
    try:
        said = await asyncio.to_thread(session.transcript, thread_id)
        job = await asyncio.to_thread(session.job, thread_id)
    except AegisError as exc:
        log.error("could not restore thread %s: %s", thread_id, exc)
        return
    view.thread_id = thread_id
    view.asked = next((text for who, text in reversed(said) if who == "user"), "")
    await cl.Message(content=f"_Your last conversation (thread `{thread_id}`), restored:_").send()
    for who, text in said:
        if who == "user":  # shown as plain text, as the person typed it
            await cl.Message(content=text, type="user_message").send()
        else:
            await cl.Message(content=md_safe(text)).send()
    if job is not None:
        await view.show_outcome(job)


@cl.on_message
async def on_message(message: cl.Message) -> None:
    if (query := parse_runs_command(message.content)) is not None:
        await show_runs(query)
        return
    if (pair := parse_compare_command(message.content)) is not None:
        await (cl.Message(content=pair).send() if isinstance(pair, str) else show_comparison(*pair))
        return
    if is_spend_command(message.content):
        await show_spend(message.content)
        return
    view = ChatView.current()
    view.asked = message.content
    session = agent_session()
    thread_id = view.thread_id or new_run_id()
    ThreadIndex().add(owner(), thread_id)
    await run_turn(
        lambda on_event: session.send(message.content, thread_id=thread_id, on_event=on_event, person=spender()),
        view,
        thread_id,
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
    answer = ApprovalAnswer(decision=Decision(decision), decided_by=who, request_id=pending.request_id)
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


@cl.action_callback(CONTINUE_ACTION)
async def on_continue(action: cl.Action) -> None:
    """A Continue button: the run continued in this tab's thread, through the approval card like any request."""
    run_id = str(action.payload.get("run_id", ""))
    if not was_offered_continue(run_id):
        await cl.Message(content=NOT_SHOWN).send()
        return
    view = ChatView.current()
    session = agent_session()
    thread_id = view.thread_id or new_run_id()
    ThreadIndex().add(owner(), thread_id)
    view.asked = f"continue run {run_id}"
    await cl.Message(content=f"**Continue** run `{run_id}`: pricing the steps left, then the approval.").send()
    await run_turn(
        lambda on_event: session.continue_run(run_id, thread_id, on_event, person=spender()), view, thread_id
    )


cl.action_callback(TRY_ACTION)(on_try)
cl.action_callback(PAGE_ACTION)(on_page)
cl.action_callback(COMPARE_ACTION)(on_compare)
