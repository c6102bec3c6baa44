"""Buttons that act on a run, and the runs a tab was offered them for: a press is taken only for a run this tab
was shown (its payload comes from the browser, so a run id typed into a forged press is refused)."""

from __future__ import annotations

import chainlit as cl


def run_action(name: str, run_id: str, *, label: str, icon: str, tooltip: str) -> cl.Action:
    return cl.Action(name=name, payload={"run_id": run_id}, label=label, icon=icon, tooltip=tooltip)


def offer_runs(key: str, run_ids: list[str]) -> None:
    """Remember, for this tab, the runs it was offered the ``key`` button for."""
    known = set(cl.user_session.get(key) or [])
    cl.user_session.set(key, sorted(known | set(run_ids)))


def was_offered(key: str, run_id: str) -> bool:
    return run_id in (cl.user_session.get(key) or [])
