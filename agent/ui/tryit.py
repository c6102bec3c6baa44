""" "Try it" after a run: the person asks the fine-tuned model something and the base model answers beside it.

The button appears under a run's outcome when the run kept a model; only runs shown in this tab can be tried
(the button's payload comes from the browser). Each question starts a sandboxed worker (tools.use.generate) that
loads the run's model, answers and ends, so no model's code ever runs in the chat's own process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import chainlit as cl

from agent.ui.presenters import md_safe
from agent.ui.run_buttons import offer_runs, run_action, was_offered
from tools.core.errors import AegisError
from tools.core.status import JobStatus
from tools.job.state import JobState
from tools.use.generate import open_model
from tools.use.protocol import Answer, GenerationSettings
from tools.use.runs import find_run

TRY_ACTION = "aegis_try_it"
TRIABLE_KEY = "aegis_triable_runs"
ASK_TIMEOUT_S = 600
TRY_TOKENS = 120


def try_action(run_id: str, label: str = "Try it") -> cl.Action:
    tooltip = f"ask run {run_id}'s model something; the base model answers beside it"
    return run_action(TRY_ACTION, run_id, label=label, icon="message-circle", tooltip=tooltip)


def remember_triable(run_ids: list[str]) -> None:
    offer_runs(TRIABLE_KEY, run_ids)


def try_actions(job: JobState) -> list[cl.Action]:
    """The Try it button on a result card, for a run that kept a model, remembered as one this tab may try."""
    if job.status not in (JobStatus.SUCCEEDED, JobStatus.EVALS_FAILED):
        return []
    remember_triable([job.run_id])
    return [try_action(job.run_id)]


def side_by_side(run_id: str, prompt: str, on_token: Callable[[str, str], None]) -> Answer:
    """The fine-tuned and the base model's greedy answers (the model's chat template, as trained), streamed to
    ``on_token(model, piece)`` with model "tuned" or "base"."""
    settings = GenerationSettings(max_new_tokens=TRY_TOKENS)
    with open_model(find_run(run_id), with_base=True) as worker:
        return worker.answer(
            [{"role": "user", "content": prompt}],
            settings,
            on_token=lambda t: on_token("tuned", t),
            with_base=True,
            on_base_token=lambda t: on_token("base", t),
        )


async def stream_answers(run_id: str, prompt: str) -> None:
    """Two messages, the tuned model's then the base model's, each filled token by token as they are generated."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
    shown = {
        "tuned": cl.Message(content=f"**The fine-tuned model says** (run `{run_id}`)\n\n"),
        "base": cl.Message(content="**The base model says**\n\n"),
    }

    def on_token(model: str, piece: str) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (model, piece))

    worker = asyncio.ensure_future(asyncio.to_thread(side_by_side, run_id, prompt, on_token))
    worker.add_done_callback(lambda _: queue.put_nowait(None))
    await cl.Message(content=f"_Loading run `{run_id}`'s model and its base; the answers stream below._").send()
    while (item := await queue.get()) is not None:
        model, piece = item
        await shown[model].stream_token(piece)
    try:
        answer: Answer = worker.result()
    except AegisError as exc:
        await cl.Message(content=md_safe(f"The model could not answer: {exc}")).send()
        return
    for model, text in (("tuned", answer.tuned), ("base", answer.base)):
        if not text:
            shown[model].content += "(nothing)"
        await shown[model].send()  # ends the stream, or shows an answer that had no tokens


async def on_try(action: cl.Action) -> None:
    """Ask for a prompt, then stream both answers; a run this tab did not show is refused."""
    run_id = str(action.payload.get("run_id", ""))
    if not was_offered(TRIABLE_KEY, run_id):
        await cl.Message(content="That run was not shown in this chat; try the runs shown here.").send()
        return
    reply = await cl.AskUserMessage(
        content=f"What should run `{run_id}` answer? (the base model answers the same)", timeout=ASK_TIMEOUT_S
    ).send()
    prompt = str((reply or {}).get("output") or "").strip()
    if not prompt:
        return
    await stream_answers(run_id, prompt)
    await cl.Message(
        content=md_safe(f"_Greedy answers to: {prompt[:200]}_ · Ask again?"), actions=[try_action(run_id)]
    ).send()
