"""Opening a dataset file safely, its content digest, and the snapshot an attempt trains on.

A dataset is opened without following a symbolic link in its last component (``O_NOFOLLOW``), and the
path the kernel really opened (``/proc/self/fd``) must lie inside the allowed data folders, so a file
swapped for a link after it was checked is refused rather than read. Files over the size limit
(``AEGIS_MAX_DATASET_MB``) are refused before a byte is read. An approval binds the digest of the
bytes its estimate read; an attempt copies the files into its own folder while hashing them, and the
script reads that copy, so what was verified is exactly what trains.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tools.core.errors import AegisError, DataError
from tools.core.paths import allowed_data_dirs, resolve_dataset_path

DEFAULT_MAX_DATASET_MB = 512
CHUNK = 1 << 20


class DataSnapshot(BaseModel):
    """The copies an attempt trains on, and the digest of their bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    digest: str
    train_path: str
    eval_path: str | None = None
    size_bytes: int


def max_dataset_bytes() -> int:
    raw = os.environ.get("AEGIS_MAX_DATASET_MB")
    if raw is None:
        return DEFAULT_MAX_DATASET_MB * 2**20
    try:
        limit = float(raw)
    except ValueError:
        limit = -1.0
    if not limit > 0:
        raise AegisError(f"AEGIS_MAX_DATASET_MB must be a positive number of megabytes, got '{raw}'")
    return int(limit * 2**20)


@contextmanager
def open_dataset(path: str | os.PathLike[str]) -> Iterator[tuple[int, Path, int]]:
    """(fd, real path, size) of a dataset file inside the allowed folders, never through a symbolic link."""
    resolved = resolve_dataset_path(path)
    try:
        fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(
                f"dataset '{path}' became a symbolic link after it was checked; it was not read. "
                "Point dataset_path at the real file"
            ) from None
        raise DataError(f"dataset '{path}' cannot be opened: {exc.strerror or exc}") from None
    try:
        real = Path(os.readlink(f"/proc/self/fd/{fd}")) if Path("/proc/self/fd").is_dir() else resolved
        if not any(real.is_relative_to(root) for root in allowed_data_dirs()):
            raise DataError(f"dataset '{path}' now leads outside the allowed data folders ({real}); it was not read")
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DataError(f"dataset '{path}' is not a regular file")
        limit = max_dataset_bytes()
        if info.st_size > limit:
            raise DataError(
                f"dataset '{path}' is {info.st_size / 2**20:,.0f} MB, over the limit of {limit / 2**20:,.0f} MB; "
                "use a smaller file, or raise AEGIS_MAX_DATASET_MB if this machine has the memory for it"
            )
        yield fd, real, info.st_size
    finally:
        os.close(fd)


def _chunks(fd: int) -> Iterator[bytes]:
    while chunk := os.read(fd, CHUNK):
        yield chunk


def read_dataset_bytes(path: str | os.PathLike[str]) -> bytes:
    """The whole file, read through ``open_dataset``."""
    with open_dataset(path) as (fd, _real, _size):
        try:
            return b"".join(_chunks(fd))
        except OSError as exc:
            raise DataError(f"dataset '{path}' cannot be read: {exc.strerror or exc}") from None


def _hash_files(paths: list[str | None], copy_to: list[Path | None] | None = None) -> tuple[str, int]:
    digest, total = hashlib.sha256(), 0
    for index, path in enumerate(paths):
        digest.update(f"[{index}]".encode())
        if path is None:
            continue
        target = copy_to[index] if copy_to else None
        with open_dataset(path) as (fd, _real, _size):
            out = open(target, "wb") if target is not None else None  # noqa: SIM115 - closed below
            try:
                for chunk in _chunks(fd):
                    digest.update(chunk)
                    total += len(chunk)
                    if out is not None:
                        out.write(chunk)
                if out is not None:
                    out.flush()
                    os.fsync(out.fileno())
            except OSError as exc:
                raise DataError(f"dataset '{path}' could not be read or copied: {exc.strerror or exc}") from None
            finally:
                if out is not None:
                    out.close()
    return digest.hexdigest(), total


def data_digest(dataset_path: str, eval_dataset_path: str | None) -> str:
    """The digest of the training and eval files' bytes: what an approval is bound to."""
    return _hash_files([dataset_path, eval_dataset_path])[0]


def snapshot_data(dataset_path: str, eval_dataset_path: str | None, dest: Path) -> DataSnapshot:
    """Copy the data into ``dest`` while hashing it; the copy is what the attempt reads."""
    dest.mkdir(parents=True, exist_ok=True)
    train = dest / f"train{Path(dataset_path).suffix.lower()}"
    held_out = dest / f"eval{Path(eval_dataset_path).suffix.lower()}" if eval_dataset_path else None
    digest, size = _hash_files([dataset_path, eval_dataset_path], [train, held_out])
    return DataSnapshot(
        digest=digest, train_path=str(train), eval_path=str(held_out) if held_out else None, size_bytes=size
    )
