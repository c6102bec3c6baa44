"""Hand an exported model on: upload the export folder to a Hugging Face Hub repository with huggingface_hub.

The token is huggingface_hub's own (HF_TOKEN, or `hf auth login`'s stored one): Aegis never asks for it, never
prints it and never writes it anywhere; any message from the Hub is scrubbed of it before it is shown. The Hub is
huggingface.co unless AEGIS_HUB_ENDPOINT (or HF_ENDPOINT) names another (a private Hub, a test stand-in).
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id
from pydantic import BaseModel, ConfigDict

from tools.core.errors import AegisError
from tools.core.settings import settings

PUSH_FAILED = "the upload to the Hub failed"


class PushFailed(AegisError):
    """The Hub refused or could not be reached: a run of its own, not input to fix."""

    exit_code = 1


class PushResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repo_id: str
    url: str
    commit: str | None
    files: int


def check_repo_id(repo_id: str) -> str:
    """A Hub repository id (OWNER/NAME), or a one-line error naming what is wrong."""

    text = repo_id.strip()
    try:
        validate_repo_id(text)
    except HFValidationError as exc:
        first = str(exc).splitlines()[0]
        raise AegisError(
            f"'{repo_id}' is not a Hub repository id ({first}); use OWNER/NAME, e.g. me/support-bot"
        ) from None
    if "/" not in text:
        raise AegisError(f"'{repo_id}' has no owner; use OWNER/NAME, e.g. me/{text}")
    return text


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def push_folder(folder: Path, repo_id: str, *, private: bool = True, message: str | None = None) -> PushResult:
    """Create the repository if it is not there and upload every file of ``folder`` in one commit."""

    repo_id = check_repo_id(repo_id)
    if not folder.is_dir() or not any(folder.iterdir()):
        raise AegisError(f"'{folder}' is not an export folder with files in it; run `aegis export RUN` first")
    token = get_token()
    if not token:
        raise AegisError("no Hugging Face token: set HF_TOKEN or run `hf auth login`, then push again")
    endpoint = settings().hub_endpoint
    api = HfApi(endpoint=endpoint, token=token, library_name="aegis-ml")
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            commit_message=message or f"Upload {folder.name} from Aegis-ML",
            repo_type="model",
        )
    except OfflineModeIsEnabled:
        raise AegisError("HF_HUB_OFFLINE is set, so the Hub cannot be reached; unset it and push again") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "no"
        hint = " (check the token's write access)" if status in (401, 403) else ""
        first = _scrub(str(exc).splitlines()[0], token)[:300]
        raise PushFailed(f"{PUSH_FAILED} with HTTP {status}{hint}: {first}") from None
    except Exception as exc:  # the network (httpx's or httpx2's errors), a malformed answer: one line, scrubbed
        raise PushFailed(f"{PUSH_FAILED}: {_scrub(f'{type(exc).__name__}: {exc}', token)[:300]}") from None
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    return PushResult(repo_id=repo_id, url=str(url), commit=getattr(info, "oid", None), files=files)
