"""`aegis evaluate RUN`: the model evals of a finished run again, without training, optionally on a person's file.

The run's kept model is measured by the same sandboxed eval worker as after training (``evaluate_job``), with the
operator's thresholds as they are now. Evals spend no money (they run on this machine's CPU), so nothing is asked
of the spend store but that no attempt of the run still runs; and so anyone who can write the run's folder may
re-evaluate it (the event names who did), unlike a continue, which spends against the run's person's limits.

The new result replaces the run's status, evals and REPORT.md only once it is whole: the worker's events are
written to a scratch log first, so a stop (Ctrl-C) leaves the run as it was, with one event saying so. A lock on
the run's folder lets one re-evaluation at a time work on a run.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from tools.core.errors import AegisError, DataError, GuardRefusal, StorageError
from tools.core.person import person_or_cli
from tools.core.runlog import RunFolder
from tools.core.spec import TrainingSpec
from tools.core.status import AttemptStatus, JobStatus
from tools.core.stop import stop_requested
from tools.inputs.dataset import load_records, resolve_format
from tools.job.healing import eval_failure, evaluate_job
from tools.job.reporting import JOB_FILE, track_job, write_job_report
from tools.job.state import JobState, ProgressFn, require_spec
from tools.policy.records import HoldState, Lifecycle
from tools.policy.store import spend_store
from tools.recipe.formatting import to_messages
from tools.use.continuing import CONTINUABLE
from tools.use.runs import RunRecord, find_run

EVALUATED = frozenset({JobStatus.SUCCEEDED, JobStatus.EVALS_FAILED})
LOCK_FILE = ".evaluate.lock"


class EvaluationStopped(AegisError):
    """A stop came while a finished run's evals ran again: the run keeps its earlier result."""


def reevaluate_run(
    ref: str,
    *,
    eval_data: str | None = None,
    on_progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    person: str | None = None,
) -> JobState:
    """The run ``ref`` names, evaluated again (on ``eval_data``'s rows instead of its held-out rows when given),
    its status, evals, REPORT.md and trackers updated; refused in one line, with nothing changed, when it cannot be.

    Raises EvaluationStopped, with the run as it was, when ``should_stop`` (default: a stop asked for in this
    process or the run's thread) says so before the new result is written."""
    record = find_run(ref)
    job = evaluable(record)
    rows = eval_rows(eval_data, require_spec(job)) if eval_data else None
    with evaluation_lock(record):
        not_running(job.run_id)
        stop = should_stop or partial(stop_requested, job.thread)
        return _reevaluate(job, rows, eval_data, on_progress=on_progress, stop=stop, person=person_or_cli(person))


def evaluable(record: RunRecord) -> JobState:
    """The run's job, at home in the run's folder, when it kept a trained model; else why not and what to do."""
    job, run = record.job, record.run_id
    if job is None:
        raise GuardRefusal(
            f"run {run} has not ended (no job record): it is still training or paused at the gate; wait for it to "
            "end (`aegis runs` shows how each run stands)"
        )
    if job.status not in EVALUATED or not job.attempts or job.attempts[-1].status != AttemptStatus.SUCCEEDED:
        raise GuardRefusal(f"run {run} has no trained model to evaluate ({job.status}); {_what_to_do(job, run)}")
    record.final_dir()  # the model is still in its folder, or the person is told where it is missing
    if job.prepared is None:
        raise GuardRefusal(f"run {run} has no record of the data it trained on; its evals cannot run again")
    return _at_home(job, record.folder.root)


def _what_to_do(job: JobState, run: str) -> str:
    if job.status == JobStatus.CANCELLED:
        return "it was cancelled: make a new request"
    if job.status in CONTINUABLE and job.attempts:
        return f"`aegis continue {run}` trains it on from its newest checkpoint, and its evals run after"
    return "`aegis runs` shows how it ended"


def _at_home(job: JobState, root: Path) -> JobState:
    """The job with its paths in the folder it is in now: a runs folder moved or copied keeps its runs usable."""
    old = Path(job.run_dir)
    if old == root:
        return job

    def moved(path: str) -> str:
        return str(root / Path(path).relative_to(old)) if Path(path).is_relative_to(old) else path

    attempts = [a.model_copy(update={"output_dir": moved(a.output_dir)}) if a.output_dir else a for a in job.attempts]
    prepared = job.prepared
    if prepared is not None:
        data = prepared.data
        eval_copy = moved(data.eval_copy) if data.eval_copy else None
        data = data.model_copy(update={"train_copy": moved(data.train_copy), "eval_copy": eval_copy})
        prepared = prepared.model_copy(update={"data": data})
    return job.model_copy(update={"run_dir": str(root), "attempts": attempts, "prepared": prepared})


def eval_rows(path: str, spec: TrainingSpec) -> list[dict[str, Any]]:
    """A person's eval file, read as training data is (the allowed folders, the size limit, the readers), each row
    in the run's format and with a reply to compare the model's answer with."""
    try:
        records = load_records(path)
        fmt = resolve_format(records, spec.dataset_format, source=f"eval data '{path}'")
    except DataError as exc:
        raise DataError(f"--eval-data: {str(exc).removeprefix('dataset_path ')}") from None
    for number, record in enumerate(records, start=1):
        split = to_messages(record, fmt)
        reply = split[1] if split is not None else str(record.get("text", ""))
        if not reply.strip():
            raise DataError(
                f"--eval-data: row {number} of '{path}' has an empty reply; every eval row needs the answer the "
                "model should give"
            )
    return records


@contextmanager
def evaluation_lock(record: RunRecord) -> Iterator[None]:
    """One re-evaluation of a run at a time, across processes: a lock on a file in the run's folder."""
    try:
        fd = os.open(record.folder.root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StorageError(f"cannot lock run {record.run_id}'s folder to evaluate it: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GuardRefusal(
                f"run {record.run_id} is being evaluated by another `aegis evaluate` now; wait for it to end"
            ) from None
        yield
    finally:
        os.close(fd)


def not_running(run_id: str) -> None:
    """Refused while the spend store says the run still goes: an attempt holds money, or the job is open."""
    store = spend_store()
    try:
        job = store.job(run_id)
    except GuardRefusal:
        return  # not in this store (a run copied from another machine): nothing of it runs here
    if any(a.state is HoldState.HELD for a in store.attempts(job_id=run_id)):
        raise GuardRefusal(f"run {run_id} has an attempt still running; wait for it to end, then evaluate it")
    if job.lifecycle is Lifecycle.OPEN:
        raise GuardRefusal(
            f"run {run_id} is still open ({job.reason or 'not ended'}): it is going on or a continue holds it; wait "
            "for it to end, then evaluate it"
        )


def _reevaluate(
    job: JobState,
    rows: list[dict[str, Any]] | None,
    eval_data: str | None,
    *,
    on_progress: ProgressFn | None,
    stop: Callable[[], bool],
    person: str,
) -> JobState:
    """Evaluate with the events in a scratch log; keep them, the result and a new report only when not stopped."""
    on = f"the rows of {eval_data}" if eval_data else "its held-out rows"
    with tempfile.TemporaryDirectory(prefix="aegis-reevaluate-") as scratch:
        trial = evaluate_job(
            job.model_copy(update={"run_dir": scratch}), on_progress=on_progress, should_stop=stop, heldout=rows
        )
        events = RunFolder(Path(scratch)).events()
    about = {"reevaluation": True, "eval_data": eval_data, "previous_status": str(job.status), "by": person}
    if stop():
        job.record(
            "evals",
            "interrupted",
            f"the re-evaluation on {on} was stopped; run {job.run_id} keeps its earlier evals ({job.status}) and "
            "report",
            **about,
            stopped=eval_failure(trial.eval_result) if trial.eval_result else None,
        )
        raise EvaluationStopped(
            f"the re-evaluation of run {job.run_id} was stopped; the run keeps its earlier evals ({job.status}) and "
            f"its report. `aegis evaluate {job.run_id}` runs them again"
        )
    for event in events:
        message = f"re-evaluation on {on} (aegis evaluate, by {person}): {event.message}"
        job.folder.append_event(event.model_copy(update={"message": message, "data": {**event.data, **about}}))
    return _reported(job.model_copy(update={"eval_result": trial.eval_result, "status": trial.status}))


def _reported(job: JobState) -> JobState:
    """REPORT.md written again with the new evals (the earlier ones stay in its event timeline), the job's record,
    and the trackers; the spend store is not touched: nothing was billed."""
    path = write_job_report(job, job.status)
    job = job.model_copy(update={"report_path": str(path)})
    job.record("report", "completed", f"report written again with the re-evaluation: {path}", path=str(path))
    job.folder.write_json(JOB_FILE, job.model_dump(mode="json"))
    track_job(job, str(job.status))
    return job
