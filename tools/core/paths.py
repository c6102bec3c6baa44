"""Where Aegis-ML keeps things, and which folders a spec may read data from.

Every location can be moved with an environment variable so tests (and services)
point all state at a folder of their own.
"""

from __future__ import annotations

import os
from pathlib import Path

from tools.core.errors import DataError
from tools.core.settings import settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_DATA_DIR = PROJECT_ROOT / "data"
TEMPLATES_DIR = PROJECT_ROOT / "templates"
PROMPTS_DIR = PROJECT_ROOT / "prompts"


def aegis_home() -> Path:
    """Root for caches that outlive a run (converted models, the ledger, the spend store)."""
    return settings().home.expanduser()


def model_cache_dir() -> Path:
    return (settings().model_cache or aegis_home() / "models").expanduser()


def runs_dir() -> Path:
    """Each run keeps its artifacts in runs/<run_id>/ under this folder."""
    return (settings().runs_dir or Path.cwd() / "runs").expanduser()


def allowed_data_dirs() -> list[Path]:
    """Folders a spec may read datasets from: AEGIS_DATA_DIRS (os.pathsep-separated), else cwd and the bundled data."""
    raw = settings().data_dirs
    if raw:
        return [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p]
    return [Path.cwd().resolve(), BUNDLED_DATA_DIR.resolve()]


def resolve_dataset_path(path: str | os.PathLike[str]) -> Path:
    """Resolve a dataset path, refusing anything outside the allowed folders or missing."""
    text = os.fspath(path)
    if not isinstance(text, str) or any(ord(ch) < 32 for ch in text):
        raise DataError(f"dataset_path {text!r} holds a control character (a NUL byte or a newline); name a real file")
    raw = Path(text).expanduser()
    candidates = [raw] if raw.is_absolute() else [Path.cwd() / raw, PROJECT_ROOT / raw]
    allowed = allowed_data_dirs()
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
            if not any(resolved.is_relative_to(root) for root in allowed):
                continue
            if resolved.is_file():
                return resolved
        except OSError as exc:  # a name too long, a loop of links, a folder we may not enter
            raise DataError(f"dataset_path '{path}' cannot be used: {exc.strerror or exc}") from None
    resolved = candidates[0].resolve()
    if not any(c.resolve().is_relative_to(root) for c in candidates for root in allowed):
        roots = ", ".join(str(r) for r in allowed)
        raise DataError(
            f"dataset_path '{path}' is outside the allowed data folders ({roots}); "
            "move the file into one of them or set AEGIS_DATA_DIRS"
        )
    raise DataError(f"dataset_path '{path}' does not exist (looked at {resolved}); check the path")
