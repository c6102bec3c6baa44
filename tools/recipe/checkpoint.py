"""What makes a checkpoint trustworthy: a digest of every file, and no gradient spike in the steps it covers.

The host checks the digests in state.json before a retry resumes from a checkpoint, and a NaN retry
rewinds to the newest checkpoint marked stable, so these rules decide what a retry can build on.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

GRAD_SPIKE_FACTOR = 10.0  # a grad norm this many times the run's median marks a divergence under way
CHECKPOINT_FILES = ("trainable.pt", "optim.pt")


def sha256_file(path: Path) -> str:
    """The digest the host checks before a retry resumes from this file: a torn or altered one is skipped."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def spikes(grad_norm: float, baseline: float) -> bool:
    """A pre-clipping grad norm that is non-finite or above GRAD_SPIKE_FACTOR x the run's median."""
    return not math.isfinite(grad_norm) or grad_norm > GRAD_SPIKE_FACTOR * baseline


def median(values: list[float]) -> float:
    finite = sorted(v for v in values if math.isfinite(v))
    return finite[len(finite) // 2] if finite else 0.0


def window_is_stable(before: list[float], window: list[float]) -> bool:
    """No gradient spike in a checkpoint's window: a NaN retry must rewind past the start of a divergence.

    The baseline is the median of the steps before the window (the window's own for the first one).
    """
    baseline = median(before or window)
    return not any(spikes(g, baseline) for g in window)


def prune_checkpoints(root: Path) -> None:
    """Keep the newest checkpoint and the newest stable one before it.

    The newest is not confirmed yet: if the step after it spikes, the retry needs the one before.
    """
    found = []
    for folder in root.glob("step-*"):
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        found.append((int(state["step"]), bool(state.get("stable", True)), folder))
    found.sort(key=lambda item: item[0])
    keep = {found[-1][2]} if found else set()
    stable = [folder for _, ok, folder in found[:-1] if ok]
    if stable:
        keep.add(stable[-1])
    for _, _, folder in found:
        if folder not in keep:
            shutil.rmtree(folder, ignore_errors=True)


def mark_unstable(folder: Path) -> None:
    """Rewrite a checkpoint's state.json with stable=false, so a NaN retry rewinds further back."""
    state_path = folder / "state.json"
    state = json.loads(state_path.read_text(encoding="utf-8"))
    state["stable"] = False
    state_path.write_text(json.dumps(state), encoding="utf-8")
