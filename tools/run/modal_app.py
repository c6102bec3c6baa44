"""Modal configuration without running anything: credentials, GPU strings, the timeout rule, the image, the app.

Everything here is safe to call with no Modal account: tests build the real image and app offline, and
``modal_status`` reads config files only. ``modal`` (heavy, optional) is imported inside the functions that need it.

Rules worth knowing before spending money:

* Timeout: ``max(10 min, 2 x estimated seconds + 10 min)``, capped at Modal's 24 h limit. The script gets
  two minutes less, so our own runner stops it first and the failure is classified as a timeout with
  its metrics and volume commit intact.
* No Modal-side retries: healing is ours (tools.plan.remediation) and every retry has to pass the budget gate.
  Modal refuses a retry policy on generator functions, so the function declares none.
* Secrets: only Modal Secrets named in ``AEGIS_MODAL_SECRETS`` (names, comma-separated); local
  environment values are never copied into the container.
"""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from tools.core.catalog import get_gpu, load_catalog
from tools.core.errors import AegisError
from tools.core.settings import settings
from tools.run import modal_entry

if TYPE_CHECKING:
    import modal

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
    "pydantic-settings==2.16.3",
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


class ModalNotConfigured(AegisError):
    """Modal cannot be used from here; the message says why and how to set it up. Nothing ran."""


def modal_status() -> tuple[bool, str]:
    """Whether Modal credentials are configured, and a hint. Reads config only; never prints a secret."""
    try:
        import modal  # noqa: F401
    except ImportError as exc:
        return False, not_configured(f"the modal package cannot be imported ({type(exc).__name__})")
    env_id, env_secret = os.environ.get("MODAL_TOKEN_ID"), os.environ.get("MODAL_TOKEN_SECRET")
    if env_id and env_secret:
        return True, "Modal is configured (token from MODAL_TOKEN_ID / MODAL_TOKEN_SECRET)"
    if env_id or env_secret:
        missing = "MODAL_TOKEN_SECRET" if env_id else "MODAL_TOKEN_ID"
        return False, not_configured(f"MODAL_TOKEN_ID and MODAL_TOKEN_SECRET must both be set; {missing} is missing")
    path = Path(os.environ.get("MODAL_CONFIG_PATH") or "~/.modal.toml").expanduser()
    if not path.is_file():
        reason = f"no Modal token: MODAL_TOKEN_ID/MODAL_TOKEN_SECRET are unset and {path} is absent"
        return False, not_configured(reason)
    try:
        profiles = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return False, not_configured(f"{path} cannot be read ({type(exc).__name__})")
    profile = os.environ.get("MODAL_PROFILE") or next(
        (name for name, values in profiles.items() if isinstance(values, dict) and values.get("active") is True),
        "default",
    )
    values = profiles.get(profile)
    if not isinstance(values, dict):
        return False, not_configured(f"{path} has no profile '{profile}'")
    has_token = bool(values.get("token_id") and values.get("token_secret"))
    has_oauth = all(values.get(k) for k in ("oauth_refresh_token", "oauth_client_id", "oauth_client_secret"))
    if not (has_token or has_oauth):
        return False, not_configured(f"profile '{profile}' in {path} has no token_id/token_secret")
    return True, f"Modal is configured (profile '{profile}' in {path})"


def not_configured(reason: str) -> str:
    """One message for every way Modal is unusable: the reason, the setup command, and the local way out."""
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

    names = [n.strip() for n in settings().modal_secrets.split(",") if n.strip()]
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
