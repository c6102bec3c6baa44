"""A Hugging Face dataset named by its id, downloaded once into a folder the one reader then reads.

``hf:OWNER/NAME`` (or a bare ``OWNER/NAME`` that is no file or folder here) names a dataset on the hub.
Where the hub can be reached, its train split is fetched with ``datasets`` and kept as JSON lines in
``$AEGIS_HOME/datasets/OWNER__NAME/`` (``tools.core.paths.hub_dataset_folder``); from then on it is a local
folder like any other: read by the same reader, hashed, copied and approved by its bytes. Where the hub
cannot be reached, the person is told so in one line, with what to do instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tools.core.errors import DataError
from tools.core.paths import hub_dataset_folder, hub_dataset_id, resolve_dataset_path
from tools.inputs.local_models import hub_reachable

HUB_SPLIT = "train"
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def ensure_dataset(text: str) -> None:
    """Download a hub dataset the first time it is named; a file or folder here, or one downloaded before, is left be."""
    dataset_id = hub_dataset_id(text)
    if dataset_id is None or (not text.strip().lower().startswith("hf:") and Path(text).expanduser().exists()):
        return
    try:
        resolve_dataset_path(text)  # a file or folder here, or downloaded before
        return
    except DataError:
        pass
    folder = hub_dataset_folder(dataset_id)
    if not hub_reachable():
        raise DataError(
            f"dataset '{text}' is not a file or folder here; read as a Hugging Face dataset id, it needs the hub, "
            f"which cannot be reached from this machine ({_why_offline()}). Download it where the hub can be reached "
            f"and point dataset_path at the file or folder (or put its files in {folder})"
        )
    _write_rows(folder, fetch_rows(dataset_id))


def fetch_rows(dataset_id: str) -> list[dict[str, Any]]:
    """The train split of a hub dataset, as records."""
    import datasets

    try:
        table = datasets.load_dataset(dataset_id, split=HUB_SPLIT)
    except Exception as exc:  # gated, missing, no train split, network trouble: one line for the person
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"Hugging Face dataset '{dataset_id}' cannot be loaded ({first[:300]})") from None
    rows = table.to_list()
    if not rows:
        raise DataError(f"Hugging Face dataset '{dataset_id}' has no rows in its '{HUB_SPLIT}' split")
    return rows


def _write_rows(folder: Path, rows: list[dict[str, Any]]) -> None:
    """Keep the rows as JSON lines, written whole or not at all."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    partial.mkdir(parents=True, exist_ok=True)
    with open(partial / f"{HUB_SPLIT}.jsonl", "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    try:
        partial.replace(folder)
    except OSError:  # another process downloaded it first
        for file in partial.iterdir():
            file.unlink()
        partial.rmdir()


def _why_offline() -> str:
    for var in OFFLINE_VARS:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var} is set"
    return "huggingface.co does not answer"
