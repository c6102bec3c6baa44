"""Which weights a model name stands for now: a continue must train the model its checkpoint was trained on."""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


def model_fingerprint(path: str) -> str:
    """A digest of a model folder's config and of its weight files' names and sizes (cheap: no weight is read).

    A name that is not a folder here (a hub id) is its own fingerprint.
    """
    folder = Path(path)
    digest = hashlib.sha256()
    if not folder.is_dir():
        digest.update(f"name:{path}".encode())
        return digest.hexdigest()[:16]
    config = folder / "config.json"
    digest.update(config.read_bytes() if config.is_file() else b"no config")
    for weights in sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file()):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:16]
