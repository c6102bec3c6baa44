"""`/runs` in the chat: the runs folder, ten to a page, filtered by outcome or text, with Try, Continue and Compare.

`/runs` lists every run newest first; `/runs succeeded` keeps one outcome; any other words keep the runs whose id,
model, method or data contain them (`/runs tiny-llama failed`). Previous and Next turn the page; Compare on two
rows (or `/compare A B`) shows them side by side, as `aegis runs compare` does. Buttons act only on runs this
tab was shown: their payload comes from the browser.
"""

from __future__ import annotations

import asyncio

import chainlit as cl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.ui.continuing import continuable_rows, continue_action
from agent.ui.presenters import md_safe
from agent.ui.run_buttons import offer_runs, run_action, was_offered
from agent.ui.tryit import remember_triable, try_action
from tools.core.errors import AegisError
from tools.core.money import DASH, usd
from tools.use.compare import Comparison, compare_runs
from tools.use.runs import RunSummary, find_run, list_runs

PAGE_SIZE = 10
PAGE_ACTION = "aegis_runs_page"
COMPARE_ACTION = "aegis_compare"
COMPARABLE_KEY = "aegis_comparable_runs"
PICKED_KEY = "aegis_compare_picked"
RUNS_WORDS = ("/runs", "past runs")  # typed, or the landing page's starter: the past runs, no agent
COMPARE_WORD = "/compare"
MAX_SPEC_ROWS = 12


class RunsQuery(BaseModel):
    """Which runs a page shows: an outcome and words to match, and the page (0 is the newest ten)."""

    model_config = ConfigDict(extra="forbid")

    outcome: str | None = None
    words: list[str] = Field(default_factory=list)
    page: int = Field(default=0, ge=0)


def parse_runs_command(text: str) -> RunsQuery | None:
    """A `/runs …` (or "past runs …") command as a query; None for anything else."""
    lowered = text.strip().lower()
    head = next((w for w in RUNS_WORDS if lowered == w or lowered.startswith(w + " ")), None)
    if head is None:
        return None
    terms = lowered[len(head) :].split()
    outcomes = {"succeeded", "failed", "cancelled", "refused", "interrupted", "evals_failed", "running", "timeout"}
    outcome = next((t for t in terms if t in outcomes), None)
    return RunsQuery(outcome=outcome, words=[t for t in terms if t != outcome])


def matches(r: RunSummary, q: RunsQuery) -> bool:
    if q.outcome is not None and not r.outcome.lower().startswith(q.outcome):
        return False
    haystack = " ".join(str(v or "") for v in (r.run_id, r.model, r.method, r.data, r.outcome)).lower()
    return all(word in haystack for word in q.words)


def _loss(r: RunSummary) -> str:
    if r.loss_before is None and r.loss_after is None:
        return DASH
    before = DASH if r.loss_before is None else f"{r.loss_before:.3f}"
    return f"{before} → {DASH if r.loss_after is None else f'{r.loss_after:.3f}'}"


def runs_page_text(runs: list[RunSummary], q: RunsQuery, total: int) -> str:
    """One page of the table, saying which runs of how many it shows and how it was filtered."""
    first = q.page * PAGE_SIZE
    shown = f"{first + 1}–{first + len(runs)} of {total}" if runs else f"none of {total}"
    filters = " ".join(([q.outcome] if q.outcome else []) + q.words)
    filtered = f", filtered by `{filters}`" if filters else ""
    rows = "".join(
        f"| `{r.run_id}` | {r.model or DASH} | {r.method or DASH} | {r.outcome} | {_loss(r)} | {usd(r.cost_usd)} |\n"
        for r in runs
    )
    return (
        f"**Past runs** ({shown}{filtered}; newest first. `/runs succeeded`, `/runs WORD` filter; "
        "**Compare** two rows to see them side by side)\n\n"
        "| Run | Model | Method | Outcome | Held-out loss | Cost |\n|---|---|---|---|---|---|\n" + rows
    )


def page_actions(runs: list[RunSummary], q: RunsQuery, total: int) -> list[cl.Action]:
    """Try, Continue and Compare for the rows (remembered for this tab), and Previous / Next."""
    triable = [r.run_id for r in runs if r.has_model]
    remember_triable(triable)
    offer_runs(COMPARABLE_KEY, [r.run_id for r in runs])
    actions = [try_action(run_id, f"Try {run_id}") for run_id in triable]
    actions += [continue_action(run_id, f"Continue {run_id}") for run_id in continuable_rows(runs)]
    actions += [
        run_action(COMPARE_ACTION, r.run_id, label=f"Compare {r.run_id}", icon="git-compare", tooltip="pick two")
        for r in runs
    ]
    for label, page, icon in (("Previous", q.page - 1, "chevron-left"), ("Next", q.page + 1, "chevron-right")):
        if 0 <= page and page * PAGE_SIZE < total:
            payload = q.model_copy(update={"page": page}).model_dump()
            actions.append(cl.Action(name=PAGE_ACTION, payload=payload, label=label, icon=icon))
    return actions


async def show_runs(q: RunsQuery) -> None:
    """One page of runs, read from the runs folder (so it is the same after a reload)."""
    everything = await asyncio.to_thread(list_runs)
    if not everything:
        await cl.Message(content="No runs yet: ask for a fine-tune, or pick one of the starters.").send()
        return
    kept = [r for r in everything if matches(r, q)]
    page = kept[q.page * PAGE_SIZE : (q.page + 1) * PAGE_SIZE]
    await cl.Message(
        content=md_safe(runs_page_text(page, q, len(kept))), actions=page_actions(page, q, len(kept))
    ).send()


async def on_page(action: cl.Action) -> None:
    try:
        q = RunsQuery.model_validate(action.payload)
    except ValidationError:
        await cl.Message(content="That page button is not valid; type `/runs` for the list.").send()
        return
    await show_runs(q)


def comparison_text(c: Comparison) -> str:
    """The two runs' figures, then their specs with the differences first, as `aegis runs compare` shows them."""
    head = f"**Compare** `{c.a.run_id}` with `{c.b.run_id}`\n\n| | `{c.a.run_id}` | `{c.b.run_id}` |\n|---|---|---|\n"
    metrics = "".join(f"| {r.name} | {r.a} | {r.b} |\n" for r in c.metrics)
    spec = sorted(c.spec, key=lambda r: not r.differs)[:MAX_SPEC_ROWS]
    spec_rows = "".join(f"| {'**' + r.name + '**' if r.differs else r.name} | {r.a} | {r.b} |\n" for r in spec)
    return head + metrics + spec_rows + "\n_Spec fields that differ are in bold._"


async def show_comparison(a: str, b: str) -> None:
    try:
        comparison = await asyncio.to_thread(lambda: compare_runs(find_run(a), find_run(b)))
    except AegisError as exc:
        await cl.Message(content=md_safe(f"Cannot compare: {exc}")).send()
        return
    await cl.Message(content=md_safe(comparison_text(comparison))).send()


async def on_compare(action: cl.Action) -> None:
    """A Compare press: the first picks a run, the second shows the two side by side."""
    run_id = str(action.payload.get("run_id", ""))
    if not was_offered(COMPARABLE_KEY, run_id):
        await cl.Message(content="That run was not listed in this chat; `/runs` lists them.").send()
        return
    picked = cl.user_session.get(PICKED_KEY)
    if not picked or picked == run_id:
        cl.user_session.set(PICKED_KEY, run_id)
        await cl.Message(content=f"Picked `{run_id}`: press **Compare** on another run.").send()
        return
    cl.user_session.set(PICKED_KEY, None)
    await show_comparison(str(picked), run_id)


def parse_compare_command(text: str) -> tuple[str, str] | None | str:
    """`/compare A B` as two run references; a line saying how to use it when malformed; None for other text."""
    words = text.strip().split()
    if not words or words[0].lower() != COMPARE_WORD:
        return None
    if len(words) != 3:
        return "Compare takes two runs: `/compare RUN_A RUN_B` (ids from `/runs`, or `latest`)."
    return words[1], words[2]
