"""What the Modal container runs: the rendered script, through the same runner as run_local.

``remote_train`` is the Modal function (tools.run.modal registers it on a per-run app): it streams
the runner's progress and log back as dicts, then yields the result with the seconds the container
held its GPUs and their cost. ``run_job`` is the plain part of it, so it runs (and is tested) on a CPU
with no Modal at all: ``modal`` is imported only where the volume is committed.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tools.core.isolation import Isolation, IsolationFacts
from tools.core.spec import ExecutionResult, TrainingSpec
from tools.run.local import run_local
from tools.run.render import RenderedScript

ProgressFn = Callable[[dict[str, Any]], None]
LOG_NAME = "train.log"  # where run_local writes the script's output
LOG_POLL_S = 1.0
_DONE = object()
# What the container gives: its own filesystem and kernel boundary (gVisor), no file of the person's machine.
MODAL_ISOLATION = IsolationFacts(
    kind=Isolation.MODAL_CONTAINER,
    detail="a Modal container: only the Modal Secrets named in AEGIS_MODAL_SECRETS are mounted; it can reach "
    "the internet (the Hub, to fetch the model)",
)


def run_job(
    script: bytes,
    config: dict[str, Any],
    spec: dict[str, Any],
    run_dir: str | Path,
    *,
    gpu: str,
    num_gpus: int,
    price_usd_per_gpu_sec: float,
    timeout_s: float,
    memory_limit_mb: int | None = None,
    on_progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Write the script and config into run_dir and run them exactly as run_local does; return its result.

    The config's input paths must already be valid here (on the Modal Volume, or local files in tests).
    Several GPUs: run_local launches ``torchrun --nproc_per_node N`` from spec.num_gpus.
    """
    workdir = Path(run_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    script_path = workdir / "train.py"
    config_path = workdir / "config.json"
    script_path.write_bytes(script)
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    rendered = RenderedScript(script_path=script_path, config_path=config_path, config=config)
    result = run_local(
        TrainingSpec.model_validate(spec),
        workdir,
        rendered,
        timeout_s=timeout_s,
        memory_limit_mb=memory_limit_mb,
        on_progress=on_progress,
        gpu_price_usd_per_sec=price_usd_per_gpu_sec * num_gpus,
        outer=MODAL_ISOLATION,  # the container is the sandbox
    )
    return result.model_copy(update={"executor": "modal", "gpu": gpu, "num_gpus": num_gpus}).model_dump(mode="json")


def remote_train(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The Modal function body: step events and log text as they happen, then {"type": "result", ...}.

    The cost counts every second from entry to return (model loading and the volume commit included),
    not only the training loop: that is the GPU time Modal bills.
    """
    started = time.monotonic()
    yield {"type": "started", "gpu": job["gpu"], "num_gpus": job["num_gpus"]}
    _install_hub_token()
    events: queue.Queue[Any] = queue.Queue()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = run_job(
                job["script"],
                job["config"],
                job["spec"],
                job["run_dir"],
                gpu=job["gpu"],
                num_gpus=job["num_gpus"],
                price_usd_per_gpu_sec=job["price_usd_per_gpu_sec"],
                timeout_s=job["timeout_s"],
                on_progress=events.put,
            )
        except Exception as exc:  # reported as a failed attempt: the container must still return a result
            outcome["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            events.put(_DONE)

    threading.Thread(target=work, name="aegis-train", daemon=True).start()
    log = _LogTail(Path(job["run_dir"]) / LOG_NAME)
    done = False
    while not done:
        try:
            event = events.get(timeout=LOG_POLL_S)
        except queue.Empty:
            event = None
        if text := log.read_new():
            yield {"type": "log", "text": text}
        if event is _DONE:
            done = True
        elif event is not None:
            yield event
    _commit(job["volume"])
    billed_s = time.monotonic() - started
    result = outcome.get("result") or ExecutionResult(
        status="failed",
        failure_class="other",
        error_message=outcome.get("error", "the runner returned nothing"),
        executor="modal",
        gpu=job["gpu"],
        num_gpus=job["num_gpus"],
    ).model_dump(mode="json")
    result["actual_cost_usd"] = billed_s * job["price_usd_per_gpu_sec"] * job["num_gpus"]
    yield {"type": "result", "result": result, "billed_seconds": billed_s}


class _LogTail:
    """New text of the runner's log since the last read, whole lines only."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0

    def read_new(self) -> str:
        if not self.path.exists():
            return ""
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        return chunk[:end].decode("utf-8", errors="replace")


def _install_hub_token() -> None:
    """Hand a Modal Secret's HF_TOKEN to the hub client as its token file.

    The runner strips secret-looking variables from the script's environment (right for a local run);
    inside this single-use container the token file is how the script can still open a gated model.
    """
    token = os.environ.get("HF_TOKEN")
    if not token:
        return
    path = Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "token"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token, encoding="utf-8")
    path.chmod(0o600)


def _commit(volume_name: str) -> None:
    """Make the outputs visible to the caller before the function returns (it downloads them next)."""
    import modal

    modal.Volume.from_name(volume_name).commit()
