"""Progress of the evals, phase by phase, as the same kind of event training sends: the CLI, chat and UI draw it.

Each event is ``{"type": "eval_progress", "phase", "label", "done", "total", "elapsed_s"}``; a phase starts with done=0 and
ends with done=total. The time each phase took is kept, so the report can set eval time beside training time. The
phases run in the eval worker, which counts them with its own EvalProgress; the aegis side relays its events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from tools.core.errors import AegisError
from tools.core.isolation import IsolationFacts

ProgressFn = Callable[[dict[str, Any]], None]
EVAL_EVENT = "eval_progress"  # training logs its own "eval" records; this is the evals phase

PHASES: dict[str, str] = {
    "load": "loading the fine-tuned and base models",
    "heldout_trained": "held-out loss, fine-tuned model",
    "heldout_base": "held-out loss, base model",
    "leak_probe": "leak probe",
    "generate": "generations, base and fine-tuned",
    "general": "forgetting check: general questions, base and fine-tuned",
    "judge": "declared LLM judges",
}


class EvalStopped(AegisError):
    """A stop was asked for while the evals ran: what was measured so far is not a verdict."""

    exit_code = 1


class PhaseEvent(BaseModel):
    """A phase event as the worker sends it: checked here, since the worker runs the model's code."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["eval_progress"]  # EVAL_EVENT
    phase: str
    label: str
    done: int
    total: int
    elapsed_s: float


class EvalProgress:
    """Counts each eval phase's units of work and reports them; ``seconds`` keeps what each phase took.

    ``isolation``: what contained the eval worker, once it started.
    """

    def __init__(self, emit: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None):
        self.emit = emit
        self.should_stop = should_stop
        self.started = time.monotonic()
        self.seconds: dict[str, float] = {}
        self.isolation: IsolationFacts | None = None
        self._current = ""
        self._began: dict[str, float] = {}

    def _send(self, phase: str, done: int, total: int) -> None:
        if self.emit is None:
            return
        self.emit(
            {
                "type": EVAL_EVENT,
                "phase": phase,
                "label": PHASES.get(phase, phase),
                "done": done,
                "total": total,
                "elapsed_s": round(time.monotonic() - self.started, 2),
            }
        )

    @contextmanager
    def phase(self, name: str, total: int) -> Iterator[Callable[[], None]]:
        """A phase of ``total`` units; the yielded function marks one unit done (and honours a stop)."""
        done = 0
        began = time.monotonic()
        self._current = name
        self._send(name, 0, total)

        def tick() -> None:
            nonlocal done
            self.check_stop()
            done += 1
            self._send(name, min(done, total), total)

        try:
            yield tick
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - began
        if done < total:
            self._send(name, total, total)

    def check_stop(self) -> None:
        """EvalStopped when a stop has been asked for, naming the phase it came in."""
        if self.should_stop is not None and self.should_stop():
            raise EvalStopped(f"the evals were stopped during the {PHASES.get(self._current, self._current)}")

    def relay(self, event: dict[str, Any]) -> None:
        """Pass on a phase event of the worker, keeping each phase's time as seen here; anything else is dropped."""
        try:
            checked = PhaseEvent.model_validate(event)
        except ValidationError:
            return
        now = time.monotonic()
        self._current = checked.phase
        self.seconds[checked.phase] = now - self._began.setdefault(checked.phase, now)
        if self.emit is not None:
            self.emit(checked.model_dump() | {"label": PHASES.get(checked.phase, checked.phase)})

    def timing_metrics(self) -> dict[str, float | None]:
        """Wall seconds per phase and in all, as eval metrics."""
        metrics: dict[str, float | None] = {f"eval_seconds_{k}": round(v, 3) for k, v in self.seconds.items()}
        metrics["eval_seconds"] = round(time.monotonic() - self.started, 3)
        return metrics
