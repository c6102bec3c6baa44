"""Generate the bundled sample datasets in data/ deterministically (fixed seed), so they can be rebuilt and reviewed.

Run: ``python -m scripts.make_datasets [--out DIR]`` (writes data/sample.jsonl, data/text.jsonl,
data/support_train.jsonl, data/support_eval.jsonl). Every answer is computed from the fact tables in this package
(``world``, ``phrases``, ``northwind_ops``, ``northwind_platform``), so the data is correct, not noise.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from tools.core.paths import BUNDLED_DATA_DIR

from .sample import make_sample
from .support import SIGNOFF, make_support
from .text import make_text

__all__ = ["SEED", "SIGNOFF", "main", "make_sample", "make_support", "make_text"]

SEED = 20240611


def _dump(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.make_datasets", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BUNDLED_DATA_DIR, help="folder to write into (default: data/)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    sample = make_sample(rng)
    text = make_text(rng)
    support_train, support_eval = make_support(rng)
    for name, rows in [
        ("sample.jsonl", sample),
        ("text.jsonl", text),
        ("support_train.jsonl", support_train),
        ("support_eval.jsonl", support_eval),
    ]:
        _dump(args.out / name, rows)
        print(f"{name}: {len(rows)} rows")
