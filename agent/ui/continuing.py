"""The Continue button: under an interrupted or failed run's outcome, and beside such runs in `/runs`.

Pressing it asks the agent, in the tab's own thread, to continue that run, exactly as the words "continue run X"
would: the continue is priced for the steps left and shown at the approval card like any other request, and only a
person's Approve there trains anything. Only runs this tab was shown can be continued (the payload comes from the
browser); the store refuses a run another continue holds, and the thread lock a second press at once.
"""

from __future__ import annotations

import chainlit as cl

from agent.lineage import can_continue
from agent.ui.run_buttons import offer_runs, run_action, was_offered
from tools.job.state import JobState
from tools.use.continuing import CONTINUABLE
from tools.use.runs import RunSummary

CONTINUE_ACTION = "aegis_continue"
CONTINUABLE_KEY = "aegis_continuable_runs"
NOT_SHOWN = "That run was not shown in this chat as one to continue; `/runs` lists the runs that can be."


def continue_action(run_id: str, label: str = "Continue") -> cl.Action:
    tooltip = f"continue run {run_id} from its newest checkpoint: priced for the steps left, approved like any run"
    return run_action(CONTINUE_ACTION, run_id, label=label, icon="play", tooltip=tooltip)


def remember(run_ids: list[str]) -> None:
    """The runs this tab was offered to continue: the only ones its Continue presses are taken for."""
    offer_runs(CONTINUABLE_KEY, run_ids)


def was_offered_continue(run_id: str) -> bool:
    return was_offered(CONTINUABLE_KEY, run_id)


def outcome_actions(job: JobState) -> list[cl.Action]:
    """The Continue button for a run that stopped with training left, remembered for this tab; else none."""
    if not can_continue(job):
        return []
    remember([job.run_id])
    return [continue_action(job.run_id)]


def continue_hint(job: JobState) -> str:
    """What the button does, under the outcome of a run that stopped."""
    if not can_continue(job):
        return ""
    return (
        "\n\n**Continue** picks it up from its newest checkpoint: a new attempt of the same run, priced for the steps "
        "left, which you approve at the gate like any run."
    )


def continuable_rows(runs: list[RunSummary]) -> list[str]:
    """The listed runs that stopped with training left, remembered for this tab."""
    ids = [r.run_id for r in runs if r.outcome in CONTINUABLE and r.attempts]
    remember(ids)
    return ids
