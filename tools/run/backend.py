"""Where an attempt runs: one small interface, one class per backend, chosen by the spec's target.

The job steps (tools/job) ask a Backend for its price, its time limit, the device the script is rendered
for, and to run an attempt; they never branch on which backend it is. A GPU target runs on a backend that
has that GPU or it does not run: nothing trains on this CPU under a GPU's approval. A new backend (a remote
sandbox service, a Slurm cluster) is one class and one ``register`` call.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from tools.core.catalog import get_gpu
from tools.core.errors import AegisError
from tools.core.isolation import IsolationFacts
from tools.core.settings import settings
from tools.core.spec import ExecutionResult, TrainingSpec
from tools.core.stop import StopCheck
from tools.run.local import run_local
from tools.run.modal import run_on_modal
from tools.run.modal_app import modal_status, modal_timeout_s
from tools.run.modal_entry import MODAL_ISOLATION
from tools.run.render import RenderedScript
from tools.run.sandbox import local_isolation

ProgressFn = Callable[[dict[str, Any]], None]
AUTO = "auto"
LOCAL = "local"
LOCAL_DEVICE = "cpu"  # the catalog's name for this machine


@dataclass(frozen=True)
class Attempt:
    """One approved attempt, rendered for the backend's device, with the limits its hold paid for."""

    spec: TrainingSpec
    rendered: RenderedScript
    timeout_s: float
    price_usd_per_s: float
    estimated_seconds: float
    estimated_cost_usd: float | None = None
    memory_limit_mb: int | None = None
    on_start: Callable[[int], None] | None = None  # the attempt's watchdog, given the process group to guard


@runtime_checkable
class Backend(Protocol):
    """What the job steps need of a place that runs training."""

    name: str
    device: Literal["cpu", "cuda"]  # what the script is rendered for

    def offers(self, gpu: str) -> bool:
        """Whether this backend has this catalog device at all (configured or not)."""
        ...

    def status(self) -> tuple[bool, str]:
        """(usable now, a hint): the hint names the setup step when it is not, and never a secret."""
        ...

    def isolation(self) -> IsolationFacts: ...

    def price_usd_per_sec(self, spec: TrainingSpec) -> float:
        """What one second of this spec's attempt bills, all its devices together."""
        ...

    def default_timeout_s(self, estimated_seconds: float) -> float:
        """The attempt's time limit before the budget cuts it."""
        ...

    def run(self, attempt: Attempt, on_progress: ProgressFn | None, should_stop: StopCheck) -> ExecutionResult: ...


class LocalBackend:
    """This machine's CPU, every process inside the local sandbox (tools/run/sandbox.py)."""

    name = LOCAL
    device: Literal["cpu", "cuda"] = "cpu"

    def offers(self, gpu: str) -> bool:
        return gpu == LOCAL_DEVICE

    def status(self) -> tuple[bool, str]:
        return True, "this machine's CPU"

    def isolation(self) -> IsolationFacts:
        return local_isolation()

    def price_usd_per_sec(self, spec: TrainingSpec) -> float:
        return get_gpu("cpu").price_usd_per_sec  # AEGIS_LOCAL_PRICE_USD_PER_HOUR, free by default

    def default_timeout_s(self, estimated_seconds: float) -> float:
        """A local run only has to be caught when it hangs: 4x the estimate plus 10 minutes, at least 30 minutes
        (a busy laptop can run several times slower than the estimate); AEGIS_LOCAL_TIMEOUT_S overrides it."""
        configured = settings().local_timeout_s
        return configured if configured is not None else max(1800.0, 4.0 * estimated_seconds + 600.0)

    def run(self, attempt: Attempt, on_progress: ProgressFn | None, should_stop: StopCheck) -> ExecutionResult:
        return run_local(
            attempt.spec,
            attempt.rendered.workdir,
            attempt.rendered,
            timeout_s=attempt.timeout_s,
            memory_limit_mb=attempt.memory_limit_mb,
            on_progress=on_progress,
            gpu_price_usd_per_sec=attempt.price_usd_per_s,
            estimated_gpu_cost_usd=attempt.estimated_cost_usd,
            should_stop=should_stop,
            on_start=attempt.on_start,
        )


class ModalBackend:
    """Modal's GPUs: the container is the sandbox (tools/run/modal*.py)."""

    name = "modal"
    device: Literal["cpu", "cuda"] = "cuda"

    def offers(self, gpu: str) -> bool:
        return get_gpu(gpu).modal_name is not None

    def status(self) -> tuple[bool, str]:
        return modal_status()

    def isolation(self) -> IsolationFacts:
        return MODAL_ISOLATION

    def price_usd_per_sec(self, spec: TrainingSpec) -> float:
        return get_gpu(spec.target_gpu).price_usd_per_sec * spec.num_gpus

    def default_timeout_s(self, estimated_seconds: float) -> float:
        return float(modal_timeout_s(estimated_seconds))

    def run(self, attempt: Attempt, on_progress: ProgressFn | None, should_stop: StopCheck) -> ExecutionResult:
        return run_on_modal(
            attempt.spec,
            attempt.rendered.workdir,
            attempt.rendered,
            estimated_seconds=attempt.estimated_seconds,
            timeout_s=attempt.timeout_s,
            on_progress=on_progress,
        )


_BACKENDS: dict[str, Backend] = {}


def _plugins() -> None:
    """The backends an operator adds (AEGIS_BACKEND_PLUGINS=module:Class,...): each one class, registered once."""
    for name in filter(None, (part.strip() for part in settings().backend_plugins.split(","))):
        module, _, attr = name.partition(":")
        try:
            backend = getattr(importlib.import_module(module), attr)()
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            raise AegisError(
                f"AEGIS_BACKEND_PLUGINS: '{name}' is not a module:Class that builds a backend ({exc})"
            ) from None
        if backend.name not in _BACKENDS:
            register(backend)


def register(backend: Backend) -> None:
    """Add a backend (or replace one of the same name); earlier ones are preferred for the same device."""
    _BACKENDS[backend.name] = backend


def unregister(name: str) -> None:
    _BACKENDS.pop(name, None)


def backend_names() -> list[str]:
    _plugins()
    return list(_BACKENDS)


def get_backend(name: str) -> Backend:
    _plugins()
    try:
        return _BACKENDS[name]
    except KeyError:
        known = ", ".join(_BACKENDS)
        raise AegisError(f"unknown backend '{name}': use one of {known} (or {AUTO})") from None


def default_target(draft: dict[str, Any]) -> str:
    """The device of a request that names none: the spec's default GPU where a backend here can run it, else this
    machine's CPU. Shown at the approval as a default, like every field the person did not set."""
    gpu = str(TrainingSpec.model_fields["target_gpu"].default)
    _plugins()
    if int(draft.get("num_gpus") or 1) > 1 or any(b.offers(gpu) and b.status()[0] for b in _BACKENDS.values()):
        return gpu
    return LOCAL_DEVICE


class NoBackend(AegisError):
    """No backend here can run the spec's target now; nothing was asked for or started."""


def choose_backend(spec: TrainingSpec, preferred: str = AUTO) -> Backend:
    """The backend that will run this spec: the first usable one that has its target (or the one asked for).

    Raises NoBackend naming each candidate's reason, so a person sees why and what to set up."""
    _plugins()
    candidates = [b for b in _BACKENDS.values() if b.offers(spec.target_gpu)]
    if preferred != AUTO:
        asked = get_backend(preferred)
        if asked not in candidates:
            raise NoBackend(f"the {asked.name} backend has no {spec.target_gpu}; it cannot run this spec")
        candidates = [asked]
    reasons = []
    for backend in candidates:
        ok, hint = backend.status()
        if ok:
            return backend
        reasons.append(f"{backend.name}: {hint}")
    if not reasons:
        raise NoBackend(f"no backend here has {spec.target_gpu}")
    raise NoBackend(f"no backend here can run on {spec.target_gpu} now ({'; '.join(reasons)})")


register(LocalBackend())
register(ModalBackend())
