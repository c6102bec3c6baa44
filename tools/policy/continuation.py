"""Continuing a run that stopped, and reconciling an attempt whose owner is gone, as store decisions.

A closed job is reopened for one more approved attempt only by a person's continue, and only when nothing of
it still runs; while the continuing process lives, no second continue may claim it. An attempt held by a
process that died together with its watchdog (a power loss) is captured at what it can be shown to have
used; the capture is one transaction, so two processes reconciling at once book it once.
"""

from __future__ import annotations

from collections.abc import Callable

from tools.core.database import Location
from tools.core.errors import GuardRefusal
from tools.core.liveness import alive, this_host
from tools.policy.db import attempt_from, read_job, transaction
from tools.policy.records import AttemptRow, HoldState, JobRecord, Lifecycle


class Continuation:
    """Mixed into SpendStore: reopen for a continue, and find and capture lost attempts."""

    path: Location
    clock: Callable[[], float]

    def reopen(self, job_id: str, *, pid: int) -> JobRecord:
        """Claim a stopped job for one continue by process ``pid``; refused, in words, when it may not be.

        Its next attempt needs a person's approval (auto-approval is turned off for it) and the retry bound
        counts again from this point.
        """
        with transaction(self.path) as db:
            job = read_job(db, job_id)
            if job.lifecycle is Lifecycle.CANCELLED:
                raise GuardRefusal(
                    f"run {job_id} was cancelled ({job.reason}); a cancelled run is not continued: make a new request"
                )
            running = db.execute(
                "SELECT COUNT(*) AS n FROM attempts WHERE job_id = ? AND state = ?", (job_id, HoldState.HELD.value)
            ).fetchone()["n"]
            if running:
                raise GuardRefusal(f"run {job_id} has an attempt still running; wait for it to end, then continue it")
            if job.lifecycle is Lifecycle.OPEN and self._claimed(job):
                raise GuardRefusal(
                    f"run {job_id} is open ({job.reason or 'not ended'}): it is still going or another continue holds "
                    "it; wait for it to end"
                )
            count = db.execute("SELECT COUNT(*) AS n FROM attempts WHERE job_id = ?", (job_id,)).fetchone()["n"]
            db.execute(
                "UPDATE jobs SET lifecycle = ?, reason = ?, allow_auto_approve = 0, opened_attempts = ?, "
                "claim_host = ?, claim_pid = ?, claimed = ? WHERE job_id = ?",
                (Lifecycle.OPEN.value, f"continued by pid {pid}", count, this_host(), pid, self.clock(), job_id),
            )
            return read_job(db, job_id)

    @staticmethod
    def _claimed(job: JobRecord) -> bool:
        """An open job is held by whoever opened it, unless that was a continue whose process is gone."""
        claim = job.claim
        if not claim.pid:
            return True  # opened by a request, not a continue: its own process ends it
        return claim.host != this_host() or alive(claim.pid, claim.since)

    def held_here(self) -> list[AttemptRow]:
        """Attempts still holding money that a process on this machine started."""
        with transaction(self.path) as db:
            rows = db.execute(
                "SELECT * FROM attempts WHERE state = ? AND host = ? ORDER BY started",
                (HoldState.HELD.value, this_host()),
            )
            return [attempt_from(row) for row in rows]

    def capture_lost(self, attempt_id: str, billed_usd: float, outcome: str) -> bool:
        """Capture a lost attempt (at most its hold) unless someone already did: True when this call did."""
        with transaction(self.path) as db:
            row = db.execute("SELECT * FROM attempts WHERE attempt_id = ?", (attempt_id,)).fetchone()
            if row is None or row["state"] != HoldState.HELD.value:
                return False
            held = attempt_from(row).held_usd
            db.execute(
                "UPDATE attempts SET state = ?, captured_usd = ?, outcome = ?, ended = ? WHERE attempt_id = ?",
                (HoldState.CAPTURED.value, min(max(0.0, billed_usd), held), outcome, self.clock(), attempt_id),
            )
            return True
