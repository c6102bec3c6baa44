"""What produced a run: the library versions and the source commit, as a model card and a tracking store show them.

Read only: the versions from the installed distributions' metadata (nothing heavy is imported), the commit with
read-only git commands. Where something cannot be known it says so instead of guessing.
"""

from __future__ import annotations

import platform
import subprocess
from functools import cache
from importlib import metadata

from pydantic import BaseModel, ConfigDict, Field

from tools.core.paths import PROJECT_ROOT

LIBRARIES = ("aegis-ml", "torch", "transformers", "peft", "tokenizers", "accelerate", "safetensors", "huggingface_hub")
UNKNOWN = "unknown"


class Provenance(BaseModel):
    """The library versions and the commit of the code that trained (or exported) a model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    python: str
    libraries: dict[str, str] = Field(default_factory=dict)
    commit: str = UNKNOWN
    dirty: bool | None = Field(default=None, description="Uncommitted changes in the working tree; None if unknown.")

    @property
    def commit_text(self) -> str:
        if self.commit == UNKNOWN:
            return "unknown (not a git checkout, or git is not installed)"
        return self.commit + (" with uncommitted changes" if self.dirty else "")


def library_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@cache
def provenance() -> Provenance:
    """This installation's versions and commit (read once per process)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return Provenance(
        python=platform.python_version(),
        libraries={name: library_version(name) for name in LIBRARIES},
        commit=commit or UNKNOWN,
        dirty=None if status is None else bool(status),
    )
