"""Opening a dataset file (or each file of a dataset folder) safely, and the content digest of its bytes.

A dataset is opened without following a symbolic link in its last component (``O_NOFOLLOW``), and the
path the kernel really opened (``/proc/self/fd``) must lie inside the allowed data folders, so a file
swapped for a link after it was checked is refused rather than read. Files over the size limit
(``AEGIS_MAX_DATASET_MB``) are refused before a byte is read. An approval binds the digest of the
bytes its estimate read (``tools.inputs.prepared`` reads, hashes and copies them once). A folder's bytes are
its data files' names and bytes, in the reader's order (``tools.recipe.data.folder_files``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.core.errors import DataError
from tools.core.paths import allowed_data_dirs, resolve_dataset_path
from tools.core.settings import settings
from tools.recipe.data import folder_files
from tools.recipe.exits import RecipeFailure

CHUNK = 1 << 20


def max_dataset_bytes() -> int:
    return int(settings().max_dataset_mb * 2**20)


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


def dataset_files(path: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """(name, path) of each file a dataset path stands for: the file itself, or a folder's data files in order."""
    resolved = resolve_dataset_path(path)
    if not resolved.is_dir():
        return [(resolved.name, resolved)]
    try:
        files = folder_files(resolved)
    except RecipeFailure as exc:
        raise DataError(str(exc)) from None
    return [(str(file.relative_to(resolved)), file) for file in files]


def read_dataset_files(path: str | os.PathLike[str]) -> list[tuple[str, bytes]]:
    """(name, bytes) of each file of a dataset, every one read through ``open_dataset``; a folder's total is limited too."""
    files, total, limit = [], 0, max_dataset_bytes()
    for name, file in dataset_files(path):
        data = read_dataset_bytes(file)
        total += len(data)
        if total > limit:
            raise DataError(
                f"dataset '{path}' is over the limit of {limit / 2**20:,.0f} MB; use fewer files, or raise "
                "AEGIS_MAX_DATASET_MB if this machine has the memory for it"
            )
        files.append((name, data))
    return files


def folder_bytes(files: list[tuple[str, bytes]]) -> bytes:
    """What a folder's digest covers: each file's name, size and bytes, in the reader's order."""
    return b"".join(f"{name}\0{len(data)}\0".encode() + data for name, data in files)


def dataset_bytes(path: str | os.PathLike[str]) -> bytes:
    """What a dataset's digest covers: a file's bytes, or its folder's ``folder_bytes``."""
    if not resolve_dataset_path(path).is_dir():
        return read_dataset_bytes(path)
    return folder_bytes(read_dataset_files(path))


def _hash_files(paths: list[str | None]) -> str:
    digest = hashlib.sha256()
    for index, path in enumerate(paths):
        digest.update(f"[{index}]".encode())
        if path is not None:
            digest.update(dataset_bytes(path))
    return digest.hexdigest()


def data_digest(dataset_path: str, eval_dataset_path: str | None) -> str:
    """The digest of the training and eval files' bytes: what an approval is bound to."""
    return _hash_files([dataset_path, eval_dataset_path])
