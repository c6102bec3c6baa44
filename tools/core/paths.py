"""Where Aegis-ML keeps things, and which folders a spec may read data from.

Every location can be moved with an environment variable so tests (and services)
point all state at a folder of their own.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

from tools.core.errors import DataError
from tools.core.settings import settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_DATA_DIR = PROJECT_ROOT / "data"
TEMPLATES_DIR = PROJECT_ROOT / "templates"
PROMPTS_DIR = PROJECT_ROOT / "prompts"
HUB_PREFIX = "hf:"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
_DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def aegis_home() -> Path:
    """Root for caches that outlive a run (converted models, the ledger, the spend store)."""
    return settings().home.expanduser()


def model_cache_dir() -> Path:
    return (settings().model_cache or aegis_home() / "models").expanduser()


def runs_dir() -> Path:
    """Each run keeps its artifacts in runs/<run_id>/ under this folder."""
    return (settings().runs_dir or Path.cwd() / "runs").expanduser()


def hub_datasets_dir() -> Path:
    """Where Hugging Face datasets are kept once downloaded, one folder per dataset id: always readable."""
    return aegis_home() / "datasets"


def allowed_data_dirs() -> list[Path]:
    """Folders a spec may read datasets from: AEGIS_DATA_DIRS (os.pathsep-separated), else cwd and the bundled data.

    The folder of downloaded Hugging Face datasets is always among them.
    """
    raw = settings().data_dirs
    if raw:
        roots = [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p]
    else:
        roots = [Path.cwd().resolve(), BUNDLED_DATA_DIR.resolve()]
    return [*roots, hub_datasets_dir().expanduser().resolve()]


def hub_dataset_id(text: str) -> str | None:
    """The Hugging Face dataset id a dataset_path names ('hf:owner/name', or 'owner/name' with no file suffix)."""
    name = text.strip()
    explicit = name.lower().startswith(HUB_PREFIX)
    name = name[len(HUB_PREFIX) :] if explicit else name
    if _HUB_ID.match(name) and (explicit or not name.lower().endswith(_DATA_SUFFIXES)):
        return name
    if explicit and re.match(r"^[A-Za-z0-9][\w.-]{0,95}$", name):
        return name  # a canonical dataset without an owner ("hf:squad")
    return None


def hub_dataset_folder(dataset_id: str) -> Path:
    """The folder a downloaded hub dataset is kept in."""
    return hub_datasets_dir().expanduser() / dataset_id.replace("/", "__")


def _downloaded(text: str) -> Path | None:
    dataset_id = hub_dataset_id(text)
    if dataset_id is None:
        return None
    folder = hub_dataset_folder(dataset_id)
    return folder.resolve() if folder.is_dir() and any(folder.iterdir()) else None


def resolve_dataset_path(path: str | os.PathLike[str]) -> Path:
    """Resolve a dataset path (a file, a folder of files, or a downloaded hub dataset), refusing anything outside the
    allowed folders or missing."""
    text = os.fspath(path)
    if not isinstance(text, str) or any(ord(ch) < 32 for ch in text):
        raise DataError(f"dataset_path {text!r} holds a control character (a NUL byte or a newline); name a real file")
    if text.strip().lower().startswith(HUB_PREFIX):
        return _hub_path(text)
    raw = Path(text).expanduser()
    candidates = [raw] if raw.is_absolute() else [Path.cwd() / raw, PROJECT_ROOT / raw]
    allowed = allowed_data_dirs()
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
            if not any(resolved.is_relative_to(root) for root in allowed):
                continue
            if resolved.is_file() or resolved.is_dir():
                return resolved
        except OSError as exc:  # a name too long, a loop of links, a folder we may not enter
            raise DataError(f"dataset_path '{path}' cannot be used: {exc.strerror or exc}") from None
    if hub_dataset_id(text) is not None:
        return _hub_path(text)
    resolved = candidates[0].resolve()
    if not any(c.resolve().is_relative_to(root) for c in candidates for root in allowed):
        roots = ", ".join(str(r) for r in allowed)
        raise DataError(
            f"dataset_path '{path}' is outside the allowed data folders ({roots}); "
            "move the file into one of them or set AEGIS_DATA_DIRS"
        )
    hint = _did_you_mean(text, [c.resolve().parent for c in candidates], allowed)
    raise DataError(f"dataset_path '{path}' does not exist (looked at {resolved}); {hint or 'check the path'}")


def _did_you_mean(text: str, folders: list[Path], allowed: list[Path]) -> str:
    """'did you mean data/sample.jsonl?': up to three names like the missing one, from its folder, written the way
    the person wrote the path; '' when none is close. Only allowed folders are looked in: no other name is shown."""
    names: set[str] = set()
    for folder in folders:
        if any(folder.is_relative_to(root) for root in allowed) and folder.is_dir():
            try:
                names.update(entry.name for entry in folder.iterdir() if not entry.name.startswith("."))
            except OSError:  # a folder we may not list gives no suggestion
                continue
    written = text.rstrip("/")
    close = difflib.get_close_matches(Path(written).name, sorted(names), n=3, cutoff=0.6)
    if not close:
        return ""
    parent = written[: len(written) - len(Path(written).name)]
    return f"did you mean {', '.join(parent + name for name in close)}?"


def _hub_path(text: str) -> Path:
    """The downloaded copy of a hub dataset, or a DataError saying it is not on this machine."""
    found = _downloaded(text)
    if found is not None:
        return found
    dataset_id = hub_dataset_id(text)
    if dataset_id is None:
        raise DataError(f"dataset_path '{text}' is not a Hugging Face dataset id (hf:OWNER/NAME)")
    raise DataError(
        f"dataset '{text}' is not a file or folder here, and as a Hugging Face dataset id it has not been downloaded "
        f"to {hub_dataset_folder(dataset_id)}; Aegis downloads it when the hub can be reached, or download it "
        "yourself and point dataset_path at the file or folder"
    )
