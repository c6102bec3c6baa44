"""What the local sandbox costs: start-up per process, and the demo's training throughput with and without it.

Start-up: the same `python -c pass` started through tools.run.sandbox.start_contained ten times inside
bubblewrap and ten times unisolated (AEGIS_BWRAP pointed at nothing), median of each; the difference is what
isolation adds to every start (target: under 0.5 s). Throughput: the demo's spec (SmolLM2-135M, LoRA, the
support data, seq_len 256, batch 2) for a few steps through run_local, isolated and not, alternating, useful
tokens per second from the script's own end record (same within noise is the target).

Run:  python bench/sandbox.py              (10 starts each, 2 x 2 training runs of 12 steps)
      python bench/sandbox.py --starts 20 --steps 20 --rounds 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, load_average, machine, model_path  # noqa: E402
from bench.throughput import run_rendered  # noqa: E402
from tools.core.isolation import Isolation  # noqa: E402
from tools.inputs.local_models import SMOLLM2  # noqa: E402
from tools.run.sandbox import Mounts, local_isolation, start_contained  # noqa: E402

NO_BWRAP = "/nonexistent/bwrap"


class Unisolated:
    """Within this block every local start runs without bubblewrap (as on a machine that lacks it)."""

    def __enter__(self) -> None:
        self.saved = os.environ.get("AEGIS_BWRAP")
        os.environ["AEGIS_BWRAP"] = NO_BWRAP

    def __exit__(self, *exc: object) -> None:
        if self.saved is None:
            os.environ.pop("AEGIS_BWRAP", None)
        else:
            os.environ["AEGIS_BWRAP"] = self.saved


def start_seconds(folder: Path, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        contained = start_contained(
            [sys.executable, "-c", "pass"], Mounts(writable=(folder,)), cwd=folder, stdout=subprocess.DEVNULL
        )
        contained.proc.wait()
        times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2, help="isolated/unisolated training pairs")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    if local_isolation().kind is not Isolation.BUBBLEWRAP:
        print(f"bubblewrap is not usable here: {local_isolation().detail}")
        return 2
    work = Path(tempfile.mkdtemp(prefix="aegis-sandbox-bench-"))
    load_start = load_average()
    start_seconds(work, 2)  # warm the page cache for both
    isolated = start_seconds(work, args.starts)
    with Unisolated():
        plain = start_seconds(work, args.starts)
    added = statistics.median(isolated) - statistics.median(plain)
    print(f"start-up, median of {args.starts}: bubblewrap {statistics.median(isolated) * 1000:.0f} ms, "
          f"unisolated {statistics.median(plain) * 1000:.0f} ms, added {added * 1000:.0f} ms "
          f"(target < 500 ms: {'met' if added < 0.5 else 'NOT met'})")  # fmt: skip

    train = argparse.Namespace(
        data="data/support_train.jsonl", method="lora", batch_size=2, seq_len=256, steps=args.steps, gpu="cpu",
        device="cpu",
    )  # fmt: skip
    path = model_path(SMOLLM2)
    rates: dict[str, list[float]] = {"bubblewrap": [], "none": []}
    for round_ in range(args.rounds):
        for kind in ("bubblewrap", "none") if round_ % 2 == 0 else ("none", "bubblewrap"):
            folder = work / f"train-{kind}-{round_}"
            if kind == "none":
                with Unisolated():
                    row = run_rendered(train, path, folder, packing=True)
            else:
                row = run_rendered(train, path, folder, packing=True)
            rates[kind].append(row["useful_tokens_per_s"])
            print(f"  {kind:10} round {round_ + 1}: {row['useful_tokens_per_s']:.1f} useful tokens/s", flush=True)
    iso, none = statistics.median(rates["bubblewrap"]), statistics.median(rates["none"])
    print(f"demo training ({args.steps} steps, median of {args.rounds}): bubblewrap {iso:.1f} tokens/s, "
          f"unisolated {none:.1f} tokens/s, ratio {iso / none:.3f}")  # fmt: skip
    load_end = load_average()
    print(f"load average: start {load_start[0]:.2f}, end {load_end[0]:.2f}")
    if not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out = RESULTS_DIR / f"sandbox-cpu-{dt.date.today().isoformat()}.json"
        report = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": "python bench/sandbox.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine(),
            "start_seconds": {"bubblewrap": isolated, "none": plain},
            "start_added_median_s": added,
            "training_tokens_per_s": rates,
            "training_ratio": iso / none,
            "load_average_start": load_start,
            "load_average_end": load_end,
        }
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
