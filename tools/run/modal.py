"""Run a rendered training script on Modal GPUs: the same script, spec and result shape as run_local.

The local side stages inputs on a Modal Volume (tools.run.modal_volume), starts one ephemeral app with one
GPU function (tools.run.modal_app), streams the container's log back and downloads the outputs. The container
calls ``tools.run.modal_entry.remote_train``, which runs the script through the very runner ``run_local``
uses. Nothing here decides whether a run may start: the approval guard runs before this is called.

Cost: container-measured seconds x the catalog's per-GPU price x num_gpus. A run that ends without the
container's result is billed as an upper bound (see ``_Attempt.aborted``). The timeout, retry and secret
rules live with the app in tools.run.modal_app. ``modal`` (heavy, optional) is imported inside functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from tools.core.catalog import get_gpu
from tools.core.spec import ExecutionResult, TrainingSpec
from tools.run.modal_app import (
    SCRIPT_TIMEOUT_HEADROOM_S,
    VOLUME_MOUNT,
    VOLUME_NAME,
    ModalNotConfigured,
    build_app,
    modal_gpu_spec,
    modal_status,
    modal_timeout_s,
    not_configured,
)
from tools.run.modal_volume import download, fetch_checkpoints, job_key, stage_config, upload
from tools.run.render import RenderedScript

if TYPE_CHECKING:
    import modal

ProgressFn = Callable[[dict[str, Any]], None]


def run_on_modal(
    spec: TrainingSpec,
    workdir: Path,
    rendered: RenderedScript,
    *,
    estimated_seconds: float,
    timeout_s: float | None = None,
    on_progress: ProgressFn | None = None,
) -> ExecutionResult:
    """Run the rendered script on Modal; raise ModalNotConfigured (nothing ran) when Modal cannot be used.

    timeout_s: the attempt's limit as its hold paid for it (the spend store's ticket); by default
    the one ``modal_timeout_s`` derives from the estimate.
    """
    ok, hint = modal_status()
    if not ok:
        raise ModalNotConfigured(hint)
    import modal

    gpu_string = modal_gpu_spec(spec.target_gpu, spec.num_gpus)
    limit_s = int(timeout_s) if timeout_s is not None else modal_timeout_s(estimated_seconds)
    price_per_gpu_s = get_gpu(spec.target_gpu).price_usd_per_sec
    workdir = Path(workdir)
    remote_dir = PurePosixPath("runs") / job_key(workdir)
    staged, uploads = stage_config(rendered.config, remote_dir)
    job = _job(spec, rendered, staged, remote_dir, price_per_gpu_s, limit_s)
    volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
    app, function = build_app(gpu_string, limit_s, volume=volume)
    _notify(on_progress, {"type": "modal", "phase": "submit", "gpu": gpu_string, "timeout_s": limit_s})
    attempt = _Attempt(spec, rendered, staged, volume, limit_s, workdir / "modal.log", price_per_gpu_s)
    with attempt.log_path.open("a", encoding="utf-8") as log:
        try:
            upload(volume, uploads)
            with app.run():
                attempt.follow(function.remote_gen(job), log, on_progress)
        except KeyboardInterrupt:
            return attempt.aborted("interrupted", "interrupted", "stopped by the person; the container was shut down")
        except (modal.exception.Error, OSError) as exc:
            return attempt.failed(exc)
    return attempt.finished()


def _job(
    spec: TrainingSpec,
    rendered: RenderedScript,
    staged: dict[str, Any],
    remote_dir: PurePosixPath,
    price_per_gpu_s: float,
    timeout_s: int,
) -> dict[str, Any]:
    """What the container function receives. The script's own limit ends before Modal's, so ours classifies it."""
    return {
        "script": Path(rendered.script_path).read_bytes(),
        "config": staged,
        "spec": spec.model_dump(mode="json"),
        "run_dir": str(PurePosixPath(VOLUME_MOUNT) / remote_dir),
        "volume": VOLUME_NAME,
        "gpu": spec.target_gpu,
        "num_gpus": spec.num_gpus,
        "price_usd_per_gpu_sec": price_per_gpu_s,
        "timeout_s": max(timeout_s - SCRIPT_TIMEOUT_HEADROOM_S, timeout_s / 2),
    }


@dataclass
class _Attempt:
    """One run on Modal as the local side sees it: what was sent, what came back, and since when it is billed."""

    spec: TrainingSpec
    rendered: RenderedScript
    staged: dict[str, Any]
    volume: modal.Volume
    timeout_s: int
    log_path: Path
    price_per_gpu_s: float
    started_at: float | None = None
    result: dict[str, Any] | None = None

    def follow(self, events: Iterable[dict[str, Any]], log: IO[str], on_progress: ProgressFn | None) -> None:
        """Append the container's log text to modal.log, keep its result, and pass every other event on."""
        for event in events:
            if event.get("type") == "started":
                self.started_at = time.monotonic()
            elif event.get("type") == "log":
                log.write(event["text"])
                log.flush()
            elif event.get("type") == "result":
                self.result = event["result"]
                continue
            _notify(on_progress, event)

    def failed(self, exc: Exception) -> ExecutionResult:
        """What an error from Modal means: not configured (raised; nothing ran) or a failed, billed attempt."""
        import modal

        if isinstance(exc, modal.exception.AuthError):
            raise ModalNotConfigured(not_configured(f"Modal rejected the credentials ({exc})")) from None
        if isinstance(exc, modal.exception.FunctionTimeoutError):
            fetch_checkpoints(self.volume, self.staged, self.rendered)
            return self.aborted("failed", "timeout", f"Modal stopped the function at its {self.timeout_s} s timeout")
        if isinstance(exc, modal.exception.ConnectionError | OSError):
            if self.started_at is None:
                reason = f"could not reach Modal ({type(exc).__name__}: {exc})"
                raise ModalNotConfigured(f"{reason}; check the network, or run locally (run_local)") from None
            return self.aborted("failed", "other", f"lost the connection to Modal: {exc}")
        fetch_checkpoints(self.volume, self.staged, self.rendered)
        return self.aborted("failed", "other", f"Modal error: {type(exc).__name__}: {exc}")

    def finished(self) -> ExecutionResult:
        """The container's own result, with its outputs downloaded to where a local run would have left them."""
        if self.result is None:
            return self.aborted("failed", "other", "the Modal function ended without a result")
        local_output = Path(self.rendered.config["output_dir"])
        download(self.volume, str(PurePosixPath(self.staged["output_dir"]).relative_to(VOLUME_MOUNT)), local_output)
        return ExecutionResult.model_validate(
            {**self.result, "output_dir": str(local_output), "log_path": str(self.log_path), "executor": "modal"}
        )

    def aborted(self, status: str, failure_class: str, message: str) -> ExecutionResult:
        """A run that ended without the container's result. Its cost is counted as an upper bound: every
        second since the container said it started, at the full GPU price (money spent on failures counts)."""
        seconds = time.monotonic() - self.started_at if self.started_at is not None else 0.0
        return ExecutionResult(
            status=status,  # type: ignore[arg-type]
            failure_class=failure_class,  # type: ignore[arg-type]
            error_message=message,
            executor="modal",
            gpu=self.spec.target_gpu,
            num_gpus=self.spec.num_gpus,
            duration_s=seconds,
            actual_cost_usd=seconds * self.price_per_gpu_s * self.spec.num_gpus,
            log_path=str(self.log_path),
        )


def _notify(on_progress: ProgressFn | None, event: dict[str, Any]) -> None:
    if on_progress is not None:
        on_progress(event)


def describe_plan(spec: TrainingSpec, estimated_seconds: float) -> dict[str, Any]:
    """What run_on_modal would ask Modal for, and the worst case it could bill, without contacting Modal."""
    price = get_gpu(spec.target_gpu).price_usd_per_sec * spec.num_gpus
    timeout_s = modal_timeout_s(estimated_seconds)
    return {
        "gpu": modal_gpu_spec(spec.target_gpu, spec.num_gpus),
        "launcher": "torchrun" if spec.num_gpus > 1 else "python",
        "timeout_s": timeout_s,
        "price_usd_per_sec": price,
        "max_cost_usd": timeout_s * price,
    }
