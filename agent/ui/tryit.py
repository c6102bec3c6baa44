""" "Try it" after a run: the person asks the fine-tuned model something and the base model answers beside it.

The button appears under a run's outcome when the run kept a model; only runs shown in this tab can be tried
(the button's payload comes from the browser). Each question starts a sandboxed worker (tools.use.generate) that
loads the run's model, answers and ends, so no model's code ever runs in the chat's own process.
"""

from __future__ import annotations

import asyncio

import chainlit as cl

from agent.ui.continuing import continuable_rows, continue_action
from agent.ui.presenters import md_safe
from agent.ui.run_buttons import offer_runs, run_action, was_offered
from tools.core.errors import AegisError
from tools.core.money import DASH, usd
from tools.use.generate import open_model
from tools.use.protocol import Answer, GenerationSettings
from tools.use.runs import RunSummary, find_run, list_runs

TRY_ACTION = "aegis_try_it"
TRIABLE_KEY = "aegis_triable_runs"
ASK_TIMEOUT_S = 600
TRY_TOKENS = 120
PAST_RUNS = 5
RUNS_COMMANDS = frozenset({"/runs", "past runs"})  # typed, or the landing page's starter: the past runs, no agent


def try_action(run_id: str, label: str = "Try it") -> cl.Action:
    tooltip = f"ask run {run_id}'s model something; the base model answers beside it"
    return run_action(TRY_ACTION, run_id, label=label, icon="message-circle", tooltip=tooltip)


def _remember(run_ids: list[str]) -> None:
    offer_runs(TRIABLE_KEY, run_ids)


async def offer(run_id: str) -> None:
    """Under a run's outcome: the button, and the run remembered as one this tab may try."""
    _remember([run_id])
    text = f"Run `{run_id}` kept its model: **Try it** to ask it something, with the base model's answer beside it."
    await cl.Message(content=text, actions=[try_action(run_id)]).send()


def side_by_side(run_id: str, prompt: str) -> Answer:
    """The fine-tuned and the base model's greedy answers to the prompt (the model's chat template, as trained)."""
    settings = GenerationSettings(max_new_tokens=TRY_TOKENS)
    with open_model(find_run(run_id), with_base=True) as worker:
        return worker.answer([{"role": "user", "content": prompt}], settings, with_base=True)


def answer_text(run_id: str, a: Answer) -> str:
    def quoted(text: str | None) -> str:
        return "\n".join(f"> {line}" for line in (text or "(nothing)").splitlines()) or "> (nothing)"

    return (
        f"**The fine-tuned model says** (run `{run_id}`)\n\n{quoted(a.tuned)}\n\n**The base model says**\n\n{quoted(a.base)}\n\n"
        f"_Greedy answers to: {a.prompt[:200]}_"
    )


async def on_try(action: cl.Action) -> None:
    """Ask for a prompt, then show both answers; a run this tab did not show is refused."""
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
    msg = cl.Message(content="_Both models are answering…_")
    await msg.send()
    try:
        result = await asyncio.to_thread(side_by_side, run_id, prompt)
        msg.content = md_safe(answer_text(run_id, result))
    except AegisError as exc:
        msg.content = md_safe(f"The model could not answer: {exc}")
    await msg.update()
    await cl.Message(content="Ask again?", actions=[try_action(run_id)]).send()


def _loss(r: RunSummary) -> str:
    if r.loss_before is None and r.loss_after is None:
        return DASH
    return f"{DASH if r.loss_before is None else f'{r.loss_before:.3f}'} → {DASH if r.loss_after is None else f'{r.loss_after:.3f}'}"


def past_runs_text(runs: list[RunSummary]) -> str:
    rows = "".join(
        f"| `{r.run_id}` | {r.model or DASH} | {r.method or DASH} | {r.outcome} | {_loss(r)} | {usd(r.cost_usd)} |\n"
        for r in runs
    )
    return (
        f"**Past runs** (the {len(runs)} newest; `aegis runs` lists all)\n\n"
        "| Run | Model | Method | Outcome | Held-out loss | Cost |\n|---|---|---|---|---|---|\n" + rows
    )


async def show_past_runs() -> None:
    """The newest runs (after a reload too: they are read from the runs folder), with Try for those with a model and
    Continue for those that stopped with training left."""
    runs = (await asyncio.to_thread(list_runs))[:PAST_RUNS]
    if not runs:
        await cl.Message(content="No runs yet: ask for a fine-tune, or pick one of the starters.").send()
        return
    triable = [r.run_id for r in runs if r.has_model]
    _remember(triable)
    actions = [try_action(run_id, f"Try {run_id}") for run_id in triable]
    actions += [continue_action(run_id, f"Continue {run_id}") for run_id in continuable_rows(runs)]
    await cl.Message(content=md_safe(past_runs_text(runs)), actions=actions).send()
