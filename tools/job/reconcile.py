"""Attempts lost with their machine: found when ``aegis`` starts, captured at what they can be shown to have used.

An attempt holds money while it runs; its own process captures it at the end, and its watchdog does if that
process dies. When both are gone at once (a power loss, a kill of both), nothing would: the hold stays, the
run reads as running forever, and a person's month can be blocked by one lost attempt. Here an attempt of this
machine whose owner and watchdog no longer run is stopped (its trainer, if still alive), captured from its
start to its last progress record (never past its hold), booked as interrupted, and its run reported and
left continuable.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
from pydantic import ValidationError

from tools.core.liveness import alive
from tools.core.money import usd
from tools.core.paths import runs_dir
from tools.job.attempt import JOB_FILE, SUPERVISION_FILE, TICKET_FILE, Supervision, book_lost
from tools.policy.records import AttemptRow, Ticket
from tools.policy.store import spend_store
from tools.run.watchdog import stop_group

PROGRESS_FILES = ("metrics.jsonl", "train.log")
LOST_OUTCOME = "interrupted"


def reconcile_lost_attempts(runs: Path | None = None) -> list[str]:
    """Reconcile every lost attempt of this machine; one line per attempt reconciled, saying what was billed."""
    said = []
    for row in spend_store().held_here():
        workdir = (runs or runs_dir()) / row.job_id / f"attempt-{row.attempt}"
        supervision = _supervision(workdir)
        if _kept(row, supervision):
            continue
        line = _reconcile(row, workdir, supervision)
        if line:
            said.append(line)
    return said


def _supervision(workdir: Path) -> Supervision | None:
    try:
        return Supervision.model_validate_json((workdir / SUPERVISION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValidationError):
        return None


def _kept(row: AttemptRow, supervision: Supervision | None) -> bool:
    """Its owner runs, or its watchdog does (which books it when the owner is gone)."""
    if alive(row.owner_pid, row.started):
        return True
    return supervision is not None and alive(supervision.watchdog, time.time())


def _reconcile(row: AttemptRow, workdir: Path, supervision: Supervision | None) -> str | None:
    if supervision is not None:
        _stop_trainer(supervision.trainer_group, workdir)
    ended = last_progress(workdir, row)
    billed = min(max(0.0, ended - row.started) * row.price_usd_per_s, row.held_usd)
    store = spend_store()
    if not store.capture_lost(row.attempt_id, billed, LOST_OUTCOME):
        return None  # another process reconciled it first
    at = datetime.fromtimestamp(ended, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    why = (
        f"lost: the process that ran it (pid {row.owner_pid}) and its watchdog were both gone (a power loss or a "
        f"kill of both); reconciled when aegis next started: billed {usd(billed)} up to its last progress record "
        f"({at}), the rest of its {usd(row.held_usd)} hold released"
    )
    ticket_path, job_path = workdir / TICKET_FILE, workdir.parent / JOB_FILE
    if ticket_path.is_file() and job_path.is_file():
        ticket = Ticket.model_validate_json(ticket_path.read_text(encoding="utf-8"))
        book_lost(workdir, ticket, ended=ended, why=why)
    else:
        store.close(row.job_id, "its attempt was lost and reconciled; its run folder was not found")
    return f"run {row.job_id} attempt {row.attempt}: {why}"


def last_progress(workdir: Path, row: AttemptRow) -> float:
    """When the attempt last showed it was working: its newest progress file, between its start and its limit."""
    times = []
    for name in PROGRESS_FILES:
        try:
            times.append((workdir / name).stat().st_mtime)
        except OSError:
            continue
    shown = max(times, default=row.started)
    return min(max(shown, row.started), row.started + row.timeout_s)


def _stop_trainer(group: int, workdir: Path) -> None:
    """A trainer that outlived both its keepers is stopped, if the pid is still its (its command names the folder)."""
    try:
        command = " ".join(psutil.Process(group).cmdline())
    except psutil.Error:
        return
    if str(workdir) in command:
        stop_group(group)
