"""Training throughput: the rendered script against the plain baseline (bench/baseline_train.py), same everything.

Same model, dataset, seq_len, micro batch, method, step count, threads and machine, in one run. The figure that
matters is USEFUL tokens per second (non-padding tokens trained on per second of the training loop): the
baseline pads every example to seq_len in fp32; the rendered script packs examples into full rows and runs
bf16 autocast where the hardware has it. `--unpacked` adds the rendered script with packing=false, which
separates what packing buys from what the precision buys.

Run:  python bench/throughput.py                       (SmolLM2-135M, full fine-tune, 10 steps, CPU)
      python bench/throughput.py --model bench:llama-27m --steps 20 --unpacked
      python bench/throughput.py --device cuda --gpu a10g --steps 50
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, load_average, machine, model_path  # noqa: E402
from tools.core.paths import resolve_dataset_path  # noqa: E402
from tools.core.spec import TrainingSpec  # noqa: E402
from tools.inputs.local_models import SMOLLM2  # noqa: E402
from tools.run.local import run_local  # noqa: E402
from tools.run.render import render_script  # noqa: E402
from tools.run.sandbox import available_cores, sandbox_env  # noqa: E402

BASELINE = Path(__file__).resolve().parent / "baseline_train.py"


def run_rendered(args: argparse.Namespace, path: str, workdir: Path, *, packing: bool) -> dict[str, Any]:
    """The project's rendered script through run_local; rates from its own end record."""
    spec = TrainingSpec(
        model_name=path,
        dataset_path=args.data,
        method=args.method,
        micro_batch_size=args.batch_size,
        seq_len=args.seq_len,
        num_epochs=100,
        max_steps=args.steps,
        learning_rate=1e-4,
        eval_split=0.0,
        packing=packing,
        target_gpu=args.gpu,
    )
    rendered = render_script(
        spec,
        workdir,
        model_path=path,
        dataset_path=resolve_dataset_path(args.data),
        eval_dataset_path=None,
        device=args.device,
    )
    result = run_local(spec, workdir, rendered, timeout_s=1200, memory_limit_mb=None)
    if result.status != "succeeded":
        raise RuntimeError(f"rendered script failed: {result.failure_class}: {result.error_message}")
    lines = rendered.metrics_path.read_text(encoding="utf-8").splitlines()
    end = next(json.loads(x) for x in reversed(lines) if '"type": "end"' in x)
    steps = result.steps_completed
    padded = steps * args.batch_size * args.seq_len
    return {
        "variant": "rendered" if packing else "rendered (packing=false)",
        "dtype": end["dtype"],
        "steps": steps,
        "useful_tokens": end["tokens"],
        "train_seconds": end["train_seconds"],
        "useful_tokens_per_s": end["tokens_per_s"],
        # With packing every row is full: all tokens are useful. Unpacked rows are padded to seq_len.
        "padding_fraction": 0.0 if packing else max(0.0, 1 - end["tokens"] / padded),
        "peak_mem_mb": end["peak_mem_mb"],
        "duration_s": result.duration_s,
        "first_loss": result.initial_train_loss,
        "final_loss": result.final_train_loss,
    }


def run_baseline(args: argparse.Namespace, path: str, workdir: Path) -> dict[str, Any]:
    """bench/baseline_train.py in a subprocess with the same thread settings as run_local gives the script."""
    out = workdir / "baseline.json"
    cmd = [
        sys.executable, str(BASELINE), "--model", path, "--data", str(resolve_dataset_path(args.data)),
        "--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size), "--max-steps", str(args.steps),
        "--method", args.method, "--device", args.device, "--out", str(out),
    ]  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        cmd, env=sandbox_env(str(workdir), available_cores()), capture_output=True, text=True, cwd=workdir
    )
    if proc.returncode != 0:
        raise RuntimeError(f"baseline failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"variant": "baseline (padded, fp32)", "dtype": "fp32", **json.loads(out.read_text(encoding="utf-8"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=SMOLLM2, help="local:tiny-llama, local:smollm2-135m-instruct, bench:llama-27m"
    )
    parser.add_argument("--data", default="data/support_train.jsonl")
    parser.add_argument("--method", choices=("full_finetune", "lora"), default="full_finetune")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--gpu", default=None, help="catalog GPU for the spec (default: cpu, or a10g with cuda)")
    parser.add_argument("--unpacked", action="store_true", help="also run the rendered script with packing=false")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the run folders (printed)")
    args = parser.parse_args(argv)
    args.gpu = args.gpu or ("cpu" if args.device == "cpu" else "a10g")
    path = model_path(args.model)
    workroot = Path(tempfile.mkdtemp(prefix="aegis-throughput-"))
    load_start = load_average()
    print(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}", flush=True)
    rows = []
    print("baseline ...", flush=True)
    rows.append(run_baseline(args, path, workroot / "baseline"))
    print("rendered (packing) ...", flush=True)
    rows.append(run_rendered(args, path, workroot / "rendered", packing=True))
    if args.unpacked:
        print("rendered (packing=false) ...", flush=True)
        rows.append(run_rendered(args, path, workroot / "unpacked", packing=False))
    load_end = load_average()
    if args.keep:
        print(f"run folders: {workroot}")
    else:
        shutil.rmtree(workroot, ignore_errors=True)
    base = rows[0]["useful_tokens_per_s"]
    print()
    print(
        f"{'variant':28} {'dtype':6} {'useful tok':>10} {'train s':>8} {'useful tok/s':>13} {'pad':>5} {'peak MB':>8} {'x':>6}"
    )
    for r in rows:
        r["ratio_vs_baseline"] = r["useful_tokens_per_s"] / base
        print(
            f"{r['variant']:28} {r['dtype']:6} {r['useful_tokens']:10d} {r['train_seconds']:8.1f} "
            f"{r['useful_tokens_per_s']:13.1f} {r['padding_fraction']:5.0%} {r['peak_mem_mb']:8.0f} "
            f"{r['ratio_vs_baseline']:6.2f}"
        )
    print(f"load average at end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    ratio = rows[1]["ratio_vs_baseline"]
    print(f"rendered / baseline useful tokens/s: {ratio:.2f}x (target >= 2x: {'met' if ratio >= 2 else 'NOT met'})")
    if not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        report = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": "python bench/throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "settings": {k: v for k, v in vars(args).items() if k not in ("no_save", "keep")},
            "model_path": path,
            "machine": machine(),
            "load_average_start": load_start,
            "load_average_end": load_end,
            "results": rows,
            "rendered_over_baseline": ratio,
        }
        out = RESULTS_DIR / f"throughput-{args.gpu}-{dt.date.today().isoformat()}.json"
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
