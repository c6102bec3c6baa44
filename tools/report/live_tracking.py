"""An attempt's loss, learning rate, gradient norm and throughput in MLflow and TensorBoard while it trains.

Follower threads in the aegis process (one per tracker) tail the attempt's metrics.jsonl (what the script flushes
after each step) and send what is new about once a second: one MLflow log_batch into the run the end-of-run logging
uses (found or created by its ``aegis.run_id`` tag), and scalars into the run's ``tensorboard/`` folder. It never holds up or
fails the training: a tracker that errs is said once (a warning now, an event when the attempt ends) and left
alone, the other goes on. When the attempt ends (finished, failed, stopped, Ctrl-C) the follower reads the last
lines and is joined; a tracker that does not answer within JOIN_S is given up, and sends nothing more. The points
it logged count as logged: the end-of-run logging sends only steps MLflow does not have yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tools.core.errors import AegisError
from tools.core.runlog import RunFolder
from tools.core.spec import TrainingSpec
from tools.inputs.prepared import PreparedData
from tools.report.mlflow_store import (
    DataInput,
    client_for,
    log_inputs,
    log_metrics,
    log_params,
    log_tags,
    mlflow_uri,
    open_run,
)
from tools.report.tracking import (
    TENSORBOARD_DIR,
    StepPoint,
    attempt_prefix,
    data_inputs,
    enabled,
    record_points,
    redact_uri,
    run_name,
    run_tags,
    spec_params,
)
from tools.run.local import MetricsTail

LIVE_POLL_S = 1.0  # how often the metrics file is read: a point reaches the trackers within about this
JOIN_S = 15.0  # how long the end of an attempt waits for a tracker that is still answering
log = logging.getLogger("aegis.tracking")


class LiveStart(BaseModel):
    """What the follower of one attempt needs: where to read, where to write, and how the run is named."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    run_dir: str
    name: str
    attempt: int
    metrics_path: str
    started: float
    trackers: list[str]
    uri: str | None = None
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    inputs: list[DataInput] = Field(default_factory=list)


def live_start(
    folder: RunFolder,
    spec: TrainingSpec,
    *,
    attempt: int,
    metrics_path: Path,
    data: PreparedData | None,
) -> LiveStart | None:
    """The follower's start for an attempt; None when tracking is off (or its setting is wrong: the end-of-run
    logging says so)."""
    try:
        trackers = enabled()
    except AegisError:
        return None
    if not trackers:
        return None
    began = [
        e.timestamp.timestamp()
        for e in folder.events()
        if (e.phase, e.status) == ("train", "started") and e.data.get("attempt") == attempt
    ]
    return LiveStart(
        run_id=folder.run_id,
        run_dir=str(folder.root),
        name=run_name(spec, folder.run_id),
        attempt=attempt,
        metrics_path=str(metrics_path),
        started=began[-1] if began else time.time(),
        trackers=sorted(trackers),
        uri=mlflow_uri() if "mlflow" in trackers else None,
        params=spec_params(spec, data.digest if data else None),
        tags=run_tags(folder.run_id, spec, "running"),
        inputs=data_inputs(spec, data),
    )


class _Board:
    """TensorBoard scalars in the run's tensorboard/ folder, flushed at each batch so `tensorboard` shows them."""

    label = "TensorBoard"

    def __init__(self, start: LiveStart, given_up: threading.Event):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(start.run_dir) / TENSORBOARD_DIR))

    def send(self, points: list[StepPoint]) -> None:
        for p in points:
            self.writer.add_scalar(p.key, p.value, global_step=p.step, walltime=p.wall_time)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _Mlflow:
    """The run as the end-of-run logging will find it: named, its spec, tags and data logged, running."""

    label = "MLflow"

    def __init__(self, start: LiveStart, given_up: threading.Event):
        uri = start.uri or mlflow_uri()
        self.client = client_for(uri)
        opened = open_run(self.client, uri, run_id=start.run_id, name=start.name, started=start.started)
        self.mlflow_id = opened.mlflow_id
        if given_up.is_set():
            return
        if not opened.has_params:
            log_params(self.client, self.mlflow_id, start.params)
        if not opened.created:  # a continued run, terminated when its last attempt ended
            self.client.update_run(self.mlflow_id, status="RUNNING")
        log_tags(self.client, self.mlflow_id, start.tags)
        log_inputs(self.client, self.mlflow_id, start.inputs)

    def send(self, points: list[StepPoint]) -> None:
        from mlflow.entities import Metric

        metrics = [Metric(p.key, p.value, int(p.wall_time * 1000), p.step) for p in points]
        log_metrics(self.client, self.mlflow_id, metrics)

    def close(self) -> None:
        """The run stays running: the end-of-run logging ends it, after the evals."""


SINKS: dict[str, type[_Board] | type[_Mlflow]] = {"tensorboard": _Board, "mlflow": _Mlflow}


class LiveFollower:
    """One thread per tracker, each tailing the attempt's metrics file, so a slow tracker holds up neither the
    training nor the other tracker."""

    def __init__(self, start: LiveStart):
        self.start = start
        self.problem: str | None = None
        self.sent: dict[str, int] = {}  # points each tracker accepted
        self._prefix = attempt_prefix(start.attempt)
        self._ending = threading.Event()
        self._given_up = threading.Event()
        self._said = threading.Lock()
        self._threads = {
            name: threading.Thread(target=self._follow, args=(name,), name=f"aegis-live-{name}", daemon=True)
            for name in start.trackers
        }

    def begin(self) -> LiveFollower:
        for thread in self._threads.values():
            thread.start()
        return self

    def end(self) -> str | None:
        """Read the last lines, stop, and wait at most JOIN_S in all; what went wrong, if anything."""
        self._ending.set()
        deadline = time.monotonic() + JOIN_S
        for thread in self._threads.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [SINKS[name].label for name, thread in self._threads.items() if thread.is_alive()]
        if stuck:
            self._given_up.set()
            self._say(f"{' and '.join(stuck)} did not answer within {JOIN_S:.0f} s; its live logging was given up")
        return self.problem

    def _say(self, problem: str) -> None:
        """The first problem is kept and logged; later ones add nothing."""
        with self._said:
            if self.problem is not None:
                return
            self.problem = problem
        log.warning("live tracking of run %s: %s; the training goes on", self.start.run_id, problem)

    def _follow(self, name: str) -> None:
        """Send new points to one tracker about every LIVE_POLL_S until the attempt ends; on its first error, say
        so and leave it."""
        kind = SINKS[name]
        tail = MetricsTail(Path(self.start.metrics_path))
        try:
            sink = kind(self.start, self._given_up)
        except Exception as exc:  # a server, a store, a disk: this tracker is left out, the training goes on
            self._say(f"{kind.label}: {type(exc).__name__}: {redact_uri(str(exc))}")
            return
        try:
            while True:
                ending = self._ending.wait(LIVE_POLL_S)
                if self._given_up.is_set():
                    return
                points = [p for r in tail.read_new() for p in record_points(r, self._prefix, self.start.started)]
                if points:
                    sink.send(points)
                    self.sent[name] = self.sent.get(name, 0) + len(points)
                if ending:
                    return
        except Exception as exc:
            self._say(f"{kind.label}: {type(exc).__name__}: {redact_uri(str(exc))}")
        finally:
            sink.close()


@contextmanager
def follow_live(start: LiveStart | None) -> Iterator[LiveFollower | None]:
    """Follow an attempt while the block trains it; when it ends, however it ends, stop following and record a
    problem the trackers had as one event of the run."""
    if start is None:
        yield None
        return
    follower = LiveFollower(start).begin()
    try:
        yield follower
    finally:
        problem = follower.end()
        if problem is not None:
            RunFolder(Path(start.run_dir)).record("tracking", "failed", f"live tracking: {problem[:500]}")
