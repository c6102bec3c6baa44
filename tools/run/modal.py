"""Run a rendered training script on Modal GPUs: the same script, spec and result shape as run_local.

The local side stages inputs on a Modal Volume, starts one ephemeral app with one GPU function, streams
the container's log back and downloads the outputs. The container calls ``tools.run.modal_entry.remote_train``,
which runs the script through the very runner ``run_local`` uses. Nothing here decides whether a run may
start: the approval guard runs before this is called.

Rules worth knowing before spending money:

* Timeout: ``max(10 min, 2 x estimated seconds + 10 min)``, capped at Modal's 24 h limit. The script gets
  two minutes less, so our own runner stops it first and the failure is classified as a timeout with
  its metrics and volume commit intact.
* No Modal-side retries: healing is ours (tools.plan.remediation) and every retry has to pass the budget gate.
  Modal refuses a retry policy on generator functions, so the function declares none.
* Cost: container-measured seconds x the catalog's per-GPU price x num_gpus.
* Secrets: only Modal Secrets named in ``AEGIS_MODAL_SECRETS`` (names, comma-separated); local
  environment values are never copied into the container.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from tools.core.catalog import get_gpu, load_catalog
from tools.core.errors import AegisError
from tools.core.spec import ExecutionResult, TrainingSpec

if TYPE_CHECKING:
    import modal

    from tools.run.render import RenderedScript

APP_NAME = "aegis-ml-train"
VOLUME_NAME = "aegis-ml"
VOLUME_MOUNT = "/vol"
SECRETS_ENV = "AEGIS_MODAL_SECRETS"
PYTHON_VERSION = "3.11"
SETUP_HINT = "pip install modal && modal token new"

MIN_TIMEOUT_S = 600
TIMEOUT_SAFETY_FACTOR = 2.0
TIMEOUT_MARGIN_S = 600
MODAL_MAX_TIMEOUT_S = 24 * 3600
# Seconds the script's own time limit leaves before Modal's, for parsing metrics and committing the volume.
SCRIPT_TIMEOUT_HEADROOM_S = 120

# Modal's per-container GPU limits (modal.com/docs/guide/gpu): A10G up to 4, the others up to 8.
MAX_GPUS_PER_CONTAINER: dict[str, int] = {"A10G": 4}
DEFAULT_MAX_GPUS = 8

# The container's packages. transformers/peft/datasets/accelerate/tokenizers/safetensors match the local
# install the CPU smoke run used (tests check this); torch's PyPI wheel for Linux x86_64 is the CUDA build.
IMAGE_PACKAGES: tuple[str, ...] = (
    "torch==2.13.0",
    "transformers==5.24.0",
    "peft==0.21.2",
    "datasets==5.2.0",
    "accelerate==1.15.0",
    "tokenizers==0.23.3",
    "safetensors==0.8.0",
    "bitsandbytes==0.50.2",
    "numpy==2.4.6",
    "pydantic==2.14.4",
    "pyyaml==6.0.4",
    "psutil==7.2.2",
)
IMAGE_ENV: dict[str, str] = {
    "PYTHONUNBUFFERED": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    # The runner defaults the script to offline mode (right on a laptop); the container may use the hub.
    "HF_HUB_OFFLINE": "0",
    "HF_DATASETS_OFFLINE": "0",
}

# Config keys that name input files or folders the container must see, and outputs it writes.
# resume_from: a checkpoint of an earlier attempt, brought home after it ended, goes back up for the retry.
INPUT_KEYS: tuple[str, ...] = ("model_path", "dataset_path", "eval_dataset_path", "resume_from")
ProgressFn = Callable[[dict[str, Any]], None]


class ModalNotConfigured(AegisError):
    """Modal cannot be used from here; the message says why and how to set it up. Nothing ran."""


def modal_status() -> tuple[bool, str]:
    """Whether Modal credentials are configured, and a hint. Reads config only; never prints a secret."""
    try:
        import modal  # noqa: F401
    except ImportError as exc:
        return False, _not_configured(f"the modal package cannot be imported ({type(exc).__name__})")
    env_id, env_secret = os.environ.get("MODAL_TOKEN_ID"), os.environ.get("MODAL_TOKEN_SECRET")
    if env_id and env_secret:
        return True, "Modal is configured (token from MODAL_TOKEN_ID / MODAL_TOKEN_SECRET)"
    if env_id or env_secret:
        missing = "MODAL_TOKEN_SECRET" if env_id else "MODAL_TOKEN_ID"
        return False, _not_configured(f"MODAL_TOKEN_ID and MODAL_TOKEN_SECRET must both be set; {missing} is missing")
    path = Path(os.environ.get("MODAL_CONFIG_PATH") or "~/.modal.toml").expanduser()
    if not path.is_file():
        reason = f"no Modal token: MODAL_TOKEN_ID/MODAL_TOKEN_SECRET are unset and {path} is absent"
        return False, _not_configured(reason)
    try:
        profiles = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return False, _not_configured(f"{path} cannot be read ({type(exc).__name__})")
    profile = os.environ.get("MODAL_PROFILE") or next(
        (name for name, values in profiles.items() if isinstance(values, dict) and values.get("active") is True),
        "default",
    )
    values = profiles.get(profile)
    if not isinstance(values, dict):
        return False, _not_configured(f"{path} has no profile '{profile}'")
    has_token = bool(values.get("token_id") and values.get("token_secret"))
    has_oauth = all(values.get(k) for k in ("oauth_refresh_token", "oauth_client_id", "oauth_client_secret"))
    if not (has_token or has_oauth):
        return False, _not_configured(f"profile '{profile}' in {path} has no token_id/token_secret")
    return True, f"Modal is configured (profile '{profile}' in {path})"


def _not_configured(reason: str) -> str:
    return (
        f"Modal is not configured: {reason}. To run on Modal GPUs: `{SETUP_HINT}` "
        "(or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET). To train without Modal, run locally on the CPU (run_local)."
    )


def modal_gpu_spec(gpu: str, num_gpus: int) -> str:
    """Modal's GPU string for a catalog GPU: 'A10G', or 'H100:2' for several in one container."""
    entry = get_gpu(gpu)
    if entry.modal_name is None:
        choices = ", ".join(name for name, g in load_catalog().gpus.items() if g.modal_name)
        raise AegisError(
            f"'{entry.name}' is not a Modal GPU: it means the local sandbox. Choose one of {choices} "
            "for Modal, or run it locally (run_local)"
        )
    limit = MAX_GPUS_PER_CONTAINER.get(entry.modal_name, DEFAULT_MAX_GPUS)
    if not 1 <= num_gpus <= limit:
        raise AegisError(f"num_gpus must be between 1 and {limit} for {entry.modal_name} on Modal, not {num_gpus}")
    return entry.modal_name if num_gpus == 1 else f"{entry.modal_name}:{num_gpus}"


def modal_timeout_s(estimated_seconds: float) -> int:
    """Modal function timeout: max(10 min, 2 x estimate + 10 min), capped at Modal's 24 h."""
    if not math.isfinite(estimated_seconds) or estimated_seconds < 0:
        raise AegisError(f"estimated_seconds must be a finite, non-negative number, not {estimated_seconds}")
    wanted = math.ceil(TIMEOUT_SAFETY_FACTOR * estimated_seconds + TIMEOUT_MARGIN_S)
    return min(MODAL_MAX_TIMEOUT_S, max(MIN_TIMEOUT_S, wanted))


def modal_secrets() -> list[modal.Secret]:
    """The Modal Secrets named in AEGIS_MODAL_SECRETS (e.g. 'huggingface' holding HF_TOKEN)."""
    import modal

    names = [n.strip() for n in os.environ.get(SECRETS_ENV, "").split(",") if n.strip()]
    return [modal.Secret.from_name(name) for name in names]


def build_image() -> modal.Image:
    """Debian slim + the pinned training stack + this project's tools package (the entry point)."""
    import modal

    return (
        modal.Image.debian_slim(python_version=PYTHON_VERSION)
        .uv_pip_install(*IMAGE_PACKAGES)
        .env(IMAGE_ENV)
        .add_local_python_source("tools", ignore=["**/__pycache__/**", "**/*.pyc"])
    )


def build_app(
    gpu: str,
    timeout_s: int,
    *,
    image: modal.Image | None = None,
    volume: modal.Volume | None = None,
    secrets: list[modal.Secret] | None = None,
) -> tuple[modal.App, modal.Function]:
    """One app with one GPU training function; built per run because the GPU and timeout are per run."""
    import modal

    from tools.run import modal_entry

    app = modal.App(APP_NAME)
    function = app.function(
        image=image if image is not None else build_image(),
        gpu=gpu,
        timeout=timeout_s,
        volumes={
            VOLUME_MOUNT: volume if volume is not None else modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
        },
        secrets=secrets if secrets is not None else modal_secrets(),
        include_source=False,
        single_use_containers=True,
    )(modal_entry.remote_train)
    return app, function


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
    timeout_s = int(timeout_s) if timeout_s is not None else modal_timeout_s(estimated_seconds)
    price_per_gpu_s = get_gpu(spec.target_gpu).price_usd_per_sec
    workdir = Path(workdir)
    log_path = workdir / "modal.log"
    remote_dir = PurePosixPath("runs") / _job_key(workdir)
    config, uploads = stage_config(rendered.config, remote_dir)
    job = {
        "script": Path(rendered.script_path).read_bytes(),
        "config": config,
        "spec": spec.model_dump(mode="json"),
        "run_dir": str(PurePosixPath(VOLUME_MOUNT) / remote_dir),
        "volume": VOLUME_NAME,
        "gpu": spec.target_gpu,
        "num_gpus": spec.num_gpus,
        "price_usd_per_gpu_sec": price_per_gpu_s,
        "timeout_s": max(timeout_s - SCRIPT_TIMEOUT_HEADROOM_S, timeout_s / 2),
    }
    volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
    app, function = build_app(gpu_string, timeout_s, volume=volume)
    _notify(on_progress, {"type": "modal", "phase": "submit", "gpu": gpu_string, "timeout_s": timeout_s})

    started_at: float | None = None
    result: dict[str, Any] | None = None
    with log_path.open("a", encoding="utf-8") as log:
        try:
            _upload(volume, uploads)
            with app.run():
                for event in function.remote_gen(job):
                    if event.get("type") == "started":
                        started_at = time.monotonic()
                    elif event.get("type") == "log":
                        log.write(event["text"])
                        log.flush()
                    elif event.get("type") == "result":
                        result = event["result"]
                        continue
                    _notify(on_progress, event)
        except KeyboardInterrupt:
            return _aborted(
                spec,
                "interrupted",
                "interrupted",
                "stopped by the person; the container was shut down",
                started_at,
                price_per_gpu_s,
                log_path,
            )
        except modal.exception.AuthError as exc:
            raise ModalNotConfigured(_not_configured(f"Modal rejected the credentials ({exc})")) from None
        except modal.exception.FunctionTimeoutError:
            _fetch_checkpoints(volume, config, rendered)
            return _aborted(
                spec,
                "failed",
                "timeout",
                f"Modal stopped the function at its {timeout_s} s timeout",
                started_at,
                price_per_gpu_s,
                log_path,
            )
        except (modal.exception.ConnectionError, OSError) as exc:
            if started_at is None:
                reason = f"could not reach Modal ({type(exc).__name__}: {exc})"
                raise ModalNotConfigured(f"{reason}; check the network, or run locally (run_local)") from None
            return _aborted(
                spec, "failed", "other", f"lost the connection to Modal: {exc}", started_at, price_per_gpu_s, log_path
            )
        except modal.exception.Error as exc:
            _fetch_checkpoints(volume, config, rendered)
            return _aborted(
                spec,
                "failed",
                "other",
                f"Modal error: {type(exc).__name__}: {exc}",
                started_at,
                price_per_gpu_s,
                log_path,
            )
    if result is None:
        return _aborted(
            spec, "failed", "other", "the Modal function ended without a result", started_at, price_per_gpu_s, log_path
        )
    local_output = Path(rendered.config["output_dir"])
    _download(volume, str(PurePosixPath(config["output_dir"]).relative_to(VOLUME_MOUNT)), local_output)
    return ExecutionResult.model_validate(
        {**result, "output_dir": str(local_output), "log_path": str(log_path), "executor": "modal"}
    )


def _fetch_checkpoints(volume: modal.Volume, staged: dict[str, Any], rendered: RenderedScript) -> None:
    """After a timeout or a lost container, bring its checkpoints home so the retry can resume (best effort)."""
    remote = str(PurePosixPath(staged["output_dir"]).relative_to(VOLUME_MOUNT)) + "/checkpoints"
    try:
        _download(volume, remote, Path(rendered.config["output_dir"]) / "checkpoints")
    except Exception:  # the volume may be out of reach for the same reason the run failed; the retry starts at 0
        return


def stage_config(config: dict[str, Any], remote_dir: PurePosixPath) -> tuple[dict[str, Any], list[tuple[Path, str]]]:
    """The config as the container sees it, and the (local, volume path) uploads that make it true.

    Local inputs move under the volume; a hub model id stays as it is. Outputs (metrics, output_dir, any
    other path under the local workdir) are rewritten into the run's folder on the volume.
    """
    staged = dict(config)
    uploads: list[tuple[Path, str]] = []
    mount = PurePosixPath(VOLUME_MOUNT)
    for key in INPUT_KEYS:
        value = config.get(key)
        if not value or not Path(value).exists():
            continue
        local = Path(value).resolve()
        if local.is_dir():
            remote = PurePosixPath("inputs") / f"{local.name}-{_folder_fingerprint(local)}"
        else:
            remote = remote_dir / "inputs" / f"{key}-{local.name}"
        uploads.append((local, str(remote)))
        staged[key] = str(mount / remote)
    for key in ("metrics_path", "output_dir"):
        staged[key] = str(mount / remote_dir / Path(config[key]).name)
    return staged, uploads


def _folder_fingerprint(folder: Path) -> str:
    """Names, sizes and mtimes: a model folder already on the volume is not uploaded again."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


def _job_key(workdir: Path) -> str:
    """run_id/attempt-N, so each attempt has its own folder on the volume."""
    resolved = workdir.resolve()
    parts = [resolved.parent.name, resolved.name]
    return "/".join(re.sub(r"[^A-Za-z0-9._-]", "_", p) or "_" for p in parts)


def _upload(volume: modal.Volume, uploads: Iterable[tuple[Path, str]]) -> None:
    """Put the inputs on the volume; a model folder whose fingerprint is already there is reused."""
    with volume.batch_upload(force=True) as batch:
        for local, remote in uploads:
            if local.is_dir():
                if not _exists(volume, remote):
                    batch.put_directory(str(local), remote)
            else:
                batch.put_file(str(local), remote)


def _exists(volume: modal.Volume, remote: str) -> bool:
    import modal

    try:
        return bool(volume.listdir(remote))
    except modal.exception.NotFoundError:
        return False


def _download(volume: modal.Volume, remote_dir: str, local_dir: Path) -> None:
    """Bring the trained artifacts home so evals and reports work on them like a local run's."""
    import modal

    try:
        entries = volume.listdir(remote_dir, recursive=True)
    except modal.exception.NotFoundError:
        return
    for entry in entries:
        if entry.type != modal.volume.FileEntryType.FILE:
            continue
        target = local_dir / PurePosixPath(entry.path).relative_to(remote_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as fh:
            volume.read_file_into_fileobj(entry.path, fh)


def _aborted(
    spec: TrainingSpec,
    status: str,
    failure_class: str,
    message: str,
    started_at: float | None,
    price_per_gpu_s: float,
    log_path: Path,
) -> ExecutionResult:
    """A run that ended without the container's result. Its cost is counted as an upper bound: every
    second since the container said it started, at the full GPU price (money spent on failures counts)."""
    seconds = time.monotonic() - started_at if started_at is not None else 0.0
    return ExecutionResult(
        status=status,  # type: ignore[arg-type]
        failure_class=failure_class,  # type: ignore[arg-type]
        error_message=message,
        executor="modal",
        gpu=spec.target_gpu,
        num_gpus=spec.num_gpus,
        duration_s=seconds,
        actual_cost_usd=seconds * price_per_gpu_s * spec.num_gpus,
        log_path=str(log_path),
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
