"""The checkpoints an attempt left on disk: which one a retry may resume from, verified by the hashes the script
wrote when it saved them (a save cut short, or a file altered since, is not a checkpoint)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

CHECKPOINT_FILES = ("state.json", "trainable.pt", "optim.pt")


def last_good_checkpoint(
    output_dir: str | Path | None, *, stable_only: bool = False
) -> tuple[int, Path, float | None] | None:
    """The newest complete checkpoint with a finite loss in an attempt's output folder: (step, folder, loss).

    stable_only: only one taken before its gradients spiked (the script marks it), for a retry after NaN; a
    checkpoint from the middle of a divergence would only diverge again, whatever the learning rate.
    """
    if not output_dir:
        return None
    found = []
    for folder in (Path(output_dir) / "checkpoints").glob("step-*"):
        if not all((folder / name).is_file() for name in CHECKPOINT_FILES):
            continue  # a save cut short (killed mid-write) is not a checkpoint
        try:
            state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(state, dict) or not _files_intact(folder, state.get("files")):
            continue  # torn or altered since it was written: resuming from it would fail, or worse, not
        loss = state.get("loss")
        if loss is not None and not math.isfinite(loss):
            continue
        if stable_only and not state.get("stable", True):
            continue
        found.append((int(state["step"]), folder, loss))
    return max(found, key=lambda item: item[0], default=None)


def _files_intact(folder: Path, manifest: object) -> bool:
    """Every file the script hashed when it saved the checkpoint still has that hash."""
    if not isinstance(manifest, dict) or set(manifest) != set(CHECKPOINT_FILES) - {"state.json"}:
        return False
    for name, expected in manifest.items():
        digest = hashlib.sha256()
        try:
            with open(folder / name, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
        except OSError:
            return False
        if digest.hexdigest() != expected:
            return False
    return True
