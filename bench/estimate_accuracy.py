"""Estimator accuracy: the modelled estimate (no probe) against real training runs of the rendered script.

Each job is rendered with tools.run.render.render_script and run with tools.run.local.run_local, exactly as
`aegis train` does, and compared with the estimate for the same spec on the same device:

- time, total: estimated_seconds (FLOPs / throughput + startup) against the subprocess's wall time (duration_s),
  which is what a run costs. Also split: startup (estimate's startup term against duration_s - train_seconds:
  process start, imports, data, model load, the save) and training (the rest against the script's train_seconds).
  Jobs run with eval_split=0: the script's two eval passes (before and after training) are not what the
  estimator models (one per epoch), and in a 20-step job they would dominate.
- peak memory: estimated_vram_gb (on 'cpu' the process's RAM) against the measured peak (peak RSS on cpu,
  torch's allocator peak on cuda).

`--fit` prints the CPU constants these runs imply (startup_base_s_cpu, cpu bf16_tflops, cpu_process_gb,
cpu_state_overhead).

Run:  python bench/estimate_accuracy.py                 (all jobs on this machine's CPU, writes bench/results/)
      python bench/estimate_accuracy.py --only tiny-lora --no-save
      python bench/estimate_accuracy.py --device cuda --gpu a10g   (same jobs on a CUDA GPU)
      python bench/estimate_accuracy.py --published [--fit]  (GPU estimates against the Qwen README's measured
      table, calibration and held-out rows in one table; --fit refits the GPU constants on the calibration rows)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import published  # noqa: E402
from bench.common import BENCH_LLAMA, load_average, machine, model_path, save_results  # noqa: E402
from tools.core.catalog import get_gpu  # noqa: E402
from tools.core.paths import resolve_dataset_path  # noqa: E402
from tools.core.spec import TrainingSpec  # noqa: E402
from tools.inputs.local_models import SMOLLM2, TINY_LLAMA  # noqa: E402
from tools.inputs.model_config import load_model_config, model_stats  # noqa: E402
from tools.inputs.prepared import prepare  # noqa: E402
from tools.plan.calibration import CALIBRATION  # noqa: E402
from tools.plan.estimator import estimate, startup_seconds  # noqa: E402
from tools.run.local import run_local  # noqa: E402
from tools.run.render import render_script  # noqa: E402

MiB = 2**20


@dataclass(frozen=True)
class Job:
    """One benchmark configuration."""

    name: str
    model: str
    method: str
    micro_batch_size: int
    seq_len: int
    max_steps: int
    dataset: str = "data/sample.jsonl"
    packing: bool = True
    gradient_checkpointing: bool = False


JOBS: tuple[Job, ...] = (
    Job("tiny-lora-b8-s256", TINY_LLAMA, "lora", 8, 256, 40),
    Job("tiny-full-b4-s512", TINY_LLAMA, "full_finetune", 4, 512, 40),
    Job("tiny-full-b8-s128-nopack", TINY_LLAMA, "full_finetune", 8, 128, 40, "data/support_train.jsonl", False),
    Job("llama27m-lora-b4-s256", BENCH_LLAMA, "lora", 4, 256, 20),
    Job("llama27m-full-b8-s128", BENCH_LLAMA, "full_finetune", 8, 128, 20),
    Job("llama27m-full-b2-s512-gc", BENCH_LLAMA, "full_finetune", 2, 512, 20, gradient_checkpointing=True),
    Job("smollm2-lora-b2-s256", SMOLLM2, "lora", 2, 256, 6, "data/support_train.jsonl"),
    Job("smollm2-full-b2-s256", SMOLLM2, "full_finetune", 2, 256, 4, "data/support_train.jsonl"),
)


def make_spec(job: Job, path: str, gpu: str) -> TrainingSpec:
    return TrainingSpec(
        model_name=path,
        dataset_path=job.dataset,
        method=job.method,
        micro_batch_size=job.micro_batch_size,
        seq_len=job.seq_len,
        num_epochs=100,  # max_steps ends every job; enough epochs that it is the limit
        max_steps=job.max_steps,
        learning_rate=1e-4,
        eval_split=0.0,  # no eval passes: the script runs two (before and after), the estimator one per epoch
        packing=job.packing,
        gradient_checkpointing=job.gradient_checkpointing,
        target_gpu=gpu,
    )


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run_job(job: Job, gpu: str, device: str, workroot: Path) -> dict[str, Any]:
    """Estimate one job, run it, and return both side by side."""
    path = model_path(job.model)
    spec = make_spec(job, path, gpu)
    workdir = workroot / job.name
    prepared = prepare(spec, workdir / "data")
    est = estimate(spec, dataset_stats=prepared.data.stats, model_config=prepared.config())
    b = est.cost_breakdown
    stats = model_stats(load_model_config(path))
    startup_est = startup_seconds(stats, b.gpu)
    rendered = render_script(
        spec,
        workdir,
        model_path=path,
        dataset_path=resolve_dataset_path(spec.dataset_path),
        eval_dataset_path=None,
        device=device,
    )
    load = load_average()
    result = run_local(spec, workdir, rendered, timeout_s=900, memory_limit_mb=None)
    if result.status != "succeeded":
        raise RuntimeError(f"{job.name}: {result.status} {result.failure_class}: {result.error_message}")
    records = _records(rendered.metrics_path)
    end = next(r for r in reversed(records) if r.get("type") == "end")
    start = next(r for r in records if r.get("type") == "start")
    train_s = float(end["train_seconds"])
    measured_mb = result.peak_memory_mb
    est_mb = est.estimated_vram_gb * 1e9 / MiB
    row = {
        "job": asdict(job),
        "model_path": path,
        "total_params": b.total_params,
        "trainable_params": b.trainable_params,
        "steps": result.steps_completed,
        "train_tokens": result.train_tokens,
        "train_rows": start.get("train_rows"),
        "flops": b.flops,
        "tokens_per_s": result.tokens_per_s,
        "est_seconds": b.estimated_seconds,
        "measured_seconds": result.duration_s,
        "time_ratio": b.estimated_seconds / result.duration_s,
        "est_startup_s": startup_est,
        "measured_startup_s": result.duration_s - train_s,
        "est_train_s": b.estimated_seconds - startup_est,
        "measured_train_s": train_s,
        "train_time_ratio": (b.estimated_seconds - startup_est) / train_s,
        "implied_tflops": b.flops / train_s / 1e12,
        "est_peak_mb": est_mb,
        "measured_peak_mb": measured_mb,
        "memory_ratio": est_mb / measured_mb,
        "est_memory_parts_gb": {
            k: getattr(b, k) for k in ("weights_gb", "gradients_gb", "optimizer_gb", "activations_gb", "overhead_gb")
        },
        "load_average_1m_before": round(load[0], 2),
        "load_average_1m_after": round(load_average()[0], 2),
    }
    return row


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and worst |estimated/measured - 1| for time (total and train-only) and peak memory."""
    out: dict[str, Any] = {}
    for key in ("time_ratio", "train_time_ratio", "memory_ratio"):
        errors = [abs(r[key] - 1.0) for r in rows]
        worst = max(range(len(rows)), key=lambda i: errors[i])
        out[key] = {
            "median_abs_error": statistics.median(errors),
            "worst_abs_error": errors[worst],
            "worst_job": rows[worst]["job"]["name"],
        }
    return out


def fit(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The CPU constants the runs imply: startup base and effective TFLOP/s (medians over jobs), and the process
    baseline and the optimizer's slack on the states (least squares of what the estimate's parts leave unexplained
    against the states: trainable weights, their gradients and optimizer states)."""
    load_terms = [r["est_startup_s"] - CALIBRATION.startup_base_s_cpu for r in rows]
    startup_base = statistics.median(r["measured_startup_s"] - t for r, t in zip(rows, load_terms, strict=True))
    tflops = statistics.median(r["implied_tflops"] for r in rows)
    frag = CALIBRATION.fragmentation
    states, unexplained = [], []
    for r in rows:
        p = r["est_memory_parts_gb"]
        variable = p["weights_gb"] + p["gradients_gb"] + p["optimizer_gb"] + p["activations_gb"] * (1 + frag)
        states.append(2 * p["gradients_gb"] + p["optimizer_gb"])  # on one device the trained weights are as large
        unexplained.append(r["measured_peak_mb"] * MiB / 1e9 - variable)
    line = statistics.linear_regression(states, unexplained)
    return {
        "startup_base_s_cpu": startup_base,
        "cpu_bf16_tflops": tflops,
        "cpu_process_gb": line.intercept,
        "cpu_state_overhead": line.slope,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'job':28} {'params':>7} {'est s':>7} {'meas s':>7} {'ratio':>6} {'train e/m':>11} {'start e/m':>11} "
        f"{'TF/s':>6} {'est MB':>7} {'meas MB':>7} {'ratio':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['job']['name']:28} {r['total_params'] / 1e6:6.1f}M {r['est_seconds']:7.1f} {r['measured_seconds']:7.1f} "
            f"{r['time_ratio']:6.2f} {r['est_train_s']:5.1f}/{r['measured_train_s']:<5.1f} "
            f"{r['est_startup_s']:5.1f}/{r['measured_startup_s']:<5.1f} {r['implied_tflops']:6.3f} "
            f"{r['est_peak_mb']:7.0f} {r['measured_peak_mb']:7.0f} {r['memory_ratio']:6.2f}"
        )


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Estimator accuracy on {report['device']} ({report['gpu']}), {report['date']}",
        "",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
        f"{report['machine']['memory_gb']} GB, torch {report['machine']['torch']}. "
        f"Load average (1 min) at start {report['load_average_start'][0]:.2f}, at end {report['load_average_end'][0]:.2f} "
        "(the jobs' own 2 threads count in it while they run).",
        f"Command: `{report['command']}`",
        "",
        "| Job | Params | Est. s | Measured s | Ratio | Train est/meas s | Startup est/meas s | Est. MB | Peak MB | Ratio "
        "| Load 1m before/after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["jobs"]:
        lines.append(
            f"| {r['job']['name']} | {r['total_params'] / 1e6:.1f}M | {r['est_seconds']:.1f} | {r['measured_seconds']:.1f} "
            f"| {r['time_ratio']:.2f} | {r['est_train_s']:.1f} / {r['measured_train_s']:.1f} "
            f"| {r['est_startup_s']:.1f} / {r['measured_startup_s']:.1f} | {r['est_peak_mb']:.0f} "
            f"| {r['measured_peak_mb']:.0f} | {r['memory_ratio']:.2f} "
            f"| {r['load_average_1m_before']:.2f} / {r['load_average_1m_after']:.2f} |"
        )
    s = report["summary"]
    lines += [
        "",
        "| Error (\\|est/meas - 1\\|) | Median | Worst | Worst job |",
        "|---|---|---|---|",
    ]
    for key, label in (
        ("time_ratio", "time, total"),
        ("train_time_ratio", "time, training only"),
        ("memory_ratio", "peak memory"),
    ):
        v = s[key]
        lines.append(f"| {label} | {v['median_abs_error']:.1%} | {v['worst_abs_error']:.1%} | {v['worst_job']} |")
    f = report["fit"]
    lines += [
        "",
        f"Constants these runs imply: startup_base_s_cpu {f['startup_base_s_cpu']:.1f} s, cpu bf16_tflops "
        f"{f['cpu_bf16_tflops']:.3f}, cpu_process_gb {f['cpu_process_gb']:.2f}, "
        f"cpu_state_overhead {f['cpu_state_overhead']:.3f}.",
        "",
    ]
    return "\n".join(lines)


def run_published(*, fit: bool) -> int:
    """Estimates against published measurements: no training here, so it runs in seconds on any machine."""
    points, skipped = published.load_points()
    if fit:
        print("fitted memory constants:", published.fit(points, published.MEMORY_FIT, "memory"))
        print("fitted time constants:", published.fit(points, published.TIME_FIT, "time"))
    rows = [published.compare(p) for p in points]
    print(f"source: {published.source()}")
    print(published.table(rows))
    print()
    print("| set | points | time median | time worst | memory median | memory worst |")
    print("|---|---|---|---|---|---|")
    for label, held_out in (("calibration", False), ("held-out", True)):
        s = published.summary([r for r in rows if r.point.held_out == held_out])
        print(
            f"| {label} | {s['points']} | {s['time_median']:.1%} | {s['time_worst']:.1%} | "
            f"{s['memory_median']:.1%} | {s['memory_worst']:.1%} |"
        )
    for line in skipped:
        print(f"left out: {line}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--gpu", default=None, help="catalog GPU to estimate for (default: cpu, or a10g with cuda)")
    parser.add_argument("--only", nargs="*", default=None, help="job names (prefix match)")
    parser.add_argument("--no-save", action="store_true", help="print only; write nothing to bench/results/")
    parser.add_argument("--keep", action="store_true", help="keep the run folders (printed)")
    parser.add_argument("--published", action="store_true", help="compare with the Qwen README's measured table")
    parser.add_argument("--fit", action="store_true", help="with --published: refit the GPU constants first")
    args = parser.parse_args(argv)
    if args.published:
        return run_published(fit=args.fit)
    gpu = args.gpu or ("cpu" if args.device == "cpu" else "a10g")
    get_gpu(gpu)
    jobs = [j for j in JOBS if not args.only or any(j.name.startswith(p) for p in args.only)]
    if not jobs:
        parser.error(f"no job matches {args.only}; jobs: {', '.join(j.name for j in JOBS)}")
    load_start = load_average()
    print(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}", flush=True)
    rows = []
    workroot = Path(tempfile.mkdtemp(prefix="aegis-bench-"))
    started = time.monotonic()
    for job in jobs:
        print(f"running {job.name} ...", flush=True)
        rows.append(run_job(job, gpu, args.device, workroot))
        r = rows[-1]
        print(
            f"  time {r['est_seconds']:.1f}/{r['measured_seconds']:.1f} s ({r['time_ratio']:.2f}), "
            f"memory {r['est_peak_mb']:.0f}/{r['measured_peak_mb']:.0f} MB ({r['memory_ratio']:.2f}), "
            f"{r['implied_tflops']:.3f} TFLOP/s, load {r['load_average_1m_before']}->{r['load_average_1m_after']}",
            flush=True,
        )
    load_end = load_average()
    if not args.keep:
        import shutil

        shutil.rmtree(workroot, ignore_errors=True)
    else:
        print(f"run folders: {workroot}")
    print()
    print_table(rows)
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": args.device,
        "gpu": gpu,
        "catalog_bf16_tflops": get_gpu(gpu).bf16_tflops,
        "calibration": asdict(CALIBRATION),
        "machine": machine(),
        "command": "python bench/estimate_accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "wall_s": time.monotonic() - started,
        "load_average_start": load_start,
        "load_average_end": load_end,
        "jobs": rows,
        "summary": summary(rows),
        "fit": fit(rows),
    }
    s = report["summary"]
    print()
    for key in ("time_ratio", "train_time_ratio", "memory_ratio"):
        v = s[key]
        print(f"{key:17} median |err| {v['median_abs_error']:.1%}, worst {v['worst_abs_error']:.1%} ({v['worst_job']})")
    f = report["fit"]
    print(
        f"implied: startup_base_s_cpu {f['startup_base_s_cpu']:.2f} s, cpu bf16_tflops {f['cpu_bf16_tflops']:.4f}, "
        f"cpu_process_gb {f['cpu_process_gb']:.3f}, cpu_state_overhead {f['cpu_state_overhead']:.3f}"
    )
    print(f"load average at end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    if not args.no_save:
        save_results(gpu, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
