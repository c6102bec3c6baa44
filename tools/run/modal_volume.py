"""The run's files on the Modal Volume: where the container finds its inputs, and bringing its outputs home.

Inputs go up before the app starts (a model folder already there is reused); outputs and, after a failure,
checkpoints come back down so evals, reports and a resumed retry work on them like a local run's.
``modal`` (heavy, optional) is imported inside the functions that need it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from tools.run.modal_app import VOLUME_MOUNT
from tools.run.render import RenderedScript

if TYPE_CHECKING:
    import modal

# Config keys that name input files or folders the container must see, and outputs it writes.
# resume_from: a checkpoint of an earlier attempt, brought home after it ended, goes back up for the retry;
# init_adapter: a finished run's adapter a warm start begins from.
INPUT_KEYS: tuple[str, ...] = ("model_path", "dataset_path", "eval_dataset_path", "resume_from", "init_adapter")


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


def job_key(workdir: Path) -> str:
    """run_id/attempt-N, so each attempt has its own folder on the volume."""
    resolved = workdir.resolve()
    parts = [resolved.parent.name, resolved.name]
    return "/".join(re.sub(r"[^A-Za-z0-9._-]", "_", p) or "_" for p in parts)


def upload(volume: modal.Volume, uploads: Iterable[tuple[Path, str]]) -> None:
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


def download(volume: modal.Volume, remote_dir: str, local_dir: Path) -> None:
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


def fetch_checkpoints(volume: modal.Volume, staged: dict[str, Any], rendered: RenderedScript) -> None:
    """After a timeout or a lost container, bring its checkpoints home so the retry can resume (best effort)."""
    remote = str(PurePosixPath(staged["output_dir"]).relative_to(VOLUME_MOUNT)) + "/checkpoints"
    try:
        download(volume, remote, Path(rendered.config["output_dir"]) / "checkpoints")
    except Exception:  # the volume may be out of reach for the same reason the run failed; the retry starts at 0
        return
