"""Host RAM and eval-phase memory: the estimate's host_ram_gb and eval_memory_gb against measured peak RSS.

Each measurement runs in a fresh process so its peak (VmHWM, which counts mmap'd checkpoint pages too) is its own:

- eval: each job trains a few steps with the rendered script (tools.run.render + tools.run.local, as `aegis train`
  does), then the eval phase runs in a process with the imports of `aegis run` (agent graph, pipeline, evals) and
  calls tools.evals.model_evals.run_evals exactly as tools.job.healing.evaluate_job does, with the operator's thresholds (default).
  Compared: eval_memory_gb against that process's peak RSS, and host_ram_gb (on cpu, the training memory) against
  the training script's peak RSS.
- load: from_pretrained of a local checkpoint in a given dtype, then every weight read (what `.to(device)` or a
  forward pass does), against tools.plan.memory.model_load_gb: the loading term of host RAM on a GPU machine and of
  the eval phase. The fp32 and bf16 checkpoints cover the zero-copy and the converting paths.
- data: the rendered script's own _load_data and _train_batches on an enlarged dataset, RSS retained per token,
  against Calibration.host_bytes_per_token (the dataset term of host RAM).
- tokenizer: RSS a loaded tokenizer keeps, tiny-llama's (3,835 entries) against SmolLM2's (49,152): the bytes per
  vocabulary entry of the eval phase's tokenizer term.
- logits: tools.evals.models.heldout_loss on rows of seq_len tokens, peak above the resident set before, in copies of the
  fp32 logits of one row (Calibration.eval_logits_copies).

Every run prints the constants it implies (eval_process_gb: the eval peak minus the estimate's other terms;
host_bytes_per_token; tokenizer_bytes_per_vocab; eval_logits_copies).

Run:  python bench/eval_memory.py                   (all of it; writes bench/results/eval-memory-cpu-<date>.json/.md)
      python bench/eval_memory.py --only tiny --no-save
      python bench/eval_memory.py --skip-eval         (the component measurements only, about 3 min)
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, load_average, machine, model_path, save_results  # noqa: E402
from tools.inputs.local_models import SMOLLM2, TINY_LLAMA  # noqa: E402
from tools.inputs.prepared import prepare  # noqa: E402
from tools.plan.calibration import CALIBRATION  # noqa: E402
from tools.plan.estimator import estimate  # noqa: E402
from tools.plan.memory import checkpoint_dtype, model_load_gb  # noqa: E402

MiB = 2**20
GB = 1e9
# What `aegis run` has imported when it reaches the eval phase (agent graph and session, pipeline, evals).
AEGIS_RUN_MODULES = (
    "agent.cli",
    "agent.commands",
    "agent.graph",
    "agent.session",
    "tools.job.pipeline",
    "tools.evals.model_evals",
)


@dataclass(frozen=True)
class Job:
    """One short training run whose eval phase is measured."""

    name: str
    model: str
    method: str
    micro_batch_size: int
    max_steps: int
    dataset: str
    eval_dataset: str | None = None
    seq_len: int = 256


JOBS: tuple[Job, ...] = (
    Job("tiny-lora", TINY_LLAMA, "lora", 8, 10, "data/sample.jsonl"),
    Job("tiny-full", TINY_LLAMA, "full_finetune", 8, 10, "data/sample.jsonl"),
    Job("smollm2-lora", SMOLLM2, "lora", 2, 4, "data/support_train.jsonl", "data/support_eval.jsonl"),
    Job("smollm2-full", SMOLLM2, "full_finetune", 2, 3, "data/support_train.jsonl", "data/support_eval.jsonl"),
)


def _status_mb() -> dict[str, float]:
    """VmRSS / VmHWM and the anonymous and file-backed parts of the resident set, in MiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out


def _peak_mb() -> float:
    """This process's peak RSS: VmHWM, not ru_maxrss, which after fork/vfork + exec starts at the parent's RSS."""
    return _status_mb()["VmHWM"]


def _child(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its last stdout line is the JSON result."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), f"--child-{kind}", json.dumps(payload)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- children


def child_eval(payload: dict[str, Any]) -> dict[str, Any]:
    """The eval phase as tools.job.healing.evaluate_job runs it, in a process with `aegis run`'s imports."""
    for module in AEGIS_RUN_MODULES:
        importlib.import_module(module)
    import torch  # noqa: F401 - imported by the pipeline before evals
    import transformers  # noqa: F401

    from tools.core.spec import ExecutionResult, TrainingSpec
    from tools.evals.model_evals import run_evals
    from tools.evals.thresholds import EvalThresholds
    from tools.inputs.dataset import load_records
    from tools.inputs.local_models import resolve_model

    spec = TrainingSpec.model_validate(payload["spec"])
    result = ExecutionResult.model_validate(payload["result"])
    before = _status_mb()
    started = time.monotonic()
    evals = run_evals(
        spec,
        result,
        base_model_path=resolve_model(spec.model_name).path,
        train_records=load_records(spec.dataset_path),
        thresholds=EvalThresholds.from_config(),
    )
    return {
        "rss_before_mb": before["VmRSS"],
        "peak_mb": _peak_mb(),
        "end": _status_mb(),
        "eval_seconds": time.monotonic() - started,
        "passed": evals.passed,
    }


def child_load(payload: dict[str, Any]) -> dict[str, Any]:
    """from_pretrained in a dtype, then every weight read once, as `.to(device)` or a forward pass reads it."""
    import datasets  # noqa: F401 - the training script's imports
    import peft  # noqa: F401
    import torch
    from transformers import AutoModelForCausalLM

    dtype = getattr(torch, payload["dtype"])
    gc.collect()
    before = _status_mb()
    model = AutoModelForCausalLM.from_pretrained(payload["path"], dtype=dtype)
    after_load = _status_mb()
    with torch.inference_mode():
        checksum = sum(float(p.float().sum()) for p in model.parameters())
    return {
        "rss_before_mb": before["VmRSS"],
        "after_load": after_load,
        "peak_mb": _peak_mb(),
        "end": _status_mb(),
        "checksum_finite": checksum == checksum,
    }


def child_data(payload: dict[str, Any]) -> dict[str, Any]:
    """The rendered script's data stage (_load_data, _train_batches): RSS it retains once loaded."""
    script = Path(payload["script"])
    spec_obj = importlib.util.spec_from_file_location("aegis_rendered_train", script)
    assert spec_obj is not None and spec_obj.loader is not None
    module = importlib.util.module_from_spec(spec_obj)
    spec_obj.loader.exec_module(module)
    cfg = module.load_config(Path(payload["config"]))
    recipe = module.FineTuneRecipe(cfg)
    recipe.output_dir.mkdir(parents=True, exist_ok=True)
    recipe.tokenizer = recipe._load_tokenizer()
    import datasets  # noqa: F401 - imported (and its arrow pool started) before the baseline

    gc.collect()
    before = _status_mb()
    recipe.train_rows, recipe.eval_rows, _ = recipe._load_data()
    recipe.train_batches = recipe._train_batches()
    gc.collect()
    after = _status_mb()
    return {"rss_before_mb": before["VmRSS"], "rss_after_mb": after["VmRSS"], "peak_mb": _peak_mb()}


def child_tokenizer(payload: dict[str, Any]) -> dict[str, Any]:
    """RSS an AutoTokenizer keeps once loaded (transformers and tokenizers imported before the baseline)."""
    import tokenizers  # noqa: F401
    from transformers import AutoTokenizer

    gc.collect()
    before = _status_mb()
    tokenizer = AutoTokenizer.from_pretrained(payload["path"])
    gc.collect()
    return {"rss_before_mb": before["VmRSS"], "rss_after_mb": _status_mb()["VmRSS"], "vocab": len(tokenizer)}


def child_logits(payload: dict[str, Any]) -> dict[str, Any]:
    """heldout_loss on rows of seq_len random tokens, after a warm-up row: peak above the RSS before it."""
    import random

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tools.evals.models import heldout_loss

    model = AutoModelForCausalLM.from_pretrained(payload["path"], dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(payload["path"])
    vocab = model.config.vocab_size
    heldout_loss(model, tokenizer, [(list(range(1, 9)), list(range(1, 9)))], "cpu")
    rng = random.Random(0)
    rows = []
    for _ in range(10):
        ids = [rng.randrange(vocab) for _ in range(payload["seq_len"])]
        rows.append((ids, ids))
    before = _status_mb()
    heldout_loss(model, tokenizer, rows, "cpu")
    return {"rss_before_mb": before["VmRSS"], "peak_mb": _peak_mb(), "vocab": vocab}


# ---------------------------------------------------------------- parent


def run_eval_job(job: Job, workroot: Path) -> dict[str, Any]:
    """Estimate, train a few steps, run the eval phase; measured and estimated side by side."""
    from tools.core.paths import resolve_dataset_path
    from tools.core.spec import TrainingSpec
    from tools.run.local import run_local
    from tools.run.render import render_script

    path = model_path(job.model)
    spec = TrainingSpec(
        model_name=job.model,
        dataset_path=job.dataset,
        eval_dataset_path=job.eval_dataset,
        method=job.method,
        micro_batch_size=job.micro_batch_size,
        seq_len=job.seq_len,
        num_epochs=100,
        max_steps=job.max_steps,
        learning_rate=1e-3,
        target_gpu="cpu",
    )
    workdir = workroot / job.name
    prepared = prepare(spec, workdir / "data")
    b = estimate(spec, dataset_stats=prepared.data.stats, model_config=prepared.config()).cost_breakdown
    rendered = render_script(
        spec,
        workdir,
        model_path=path,
        dataset_path=resolve_dataset_path(spec.dataset_path),
        eval_dataset_path=resolve_dataset_path(job.eval_dataset) if job.eval_dataset else None,
        device="cpu",
    )
    load_before = load_average()[0]
    parent_hwm = _peak_mb()  # the script's ru_maxrss starts at the parent's RSS: it must stay below the measured peak
    result = run_local(spec, workdir, rendered, timeout_s=900, memory_limit_mb=None)
    if result.status != "succeeded":
        raise RuntimeError(f"{job.name}: {result.status} {result.failure_class}: {result.error_message}")
    measured = _child("eval", {"spec": spec.model_dump(mode="json"), "result": result.model_dump(mode="json")})
    assert b.host_ram_gb is not None and b.eval_memory_gb is not None
    est_eval_mb = b.eval_memory_gb * GB / MiB
    est_host_mb = b.host_ram_gb * GB / MiB
    return {
        "job": asdict(job),
        "total_params": b.total_params,
        "trainable_params": b.trainable_params,
        "est_host_ram_mb": est_host_mb,
        "measured_train_peak_mb": result.peak_memory_mb,
        "bench_parent_hwm_mb": parent_hwm,
        "host_ratio": est_host_mb / result.peak_memory_mb,
        "est_eval_mb": est_eval_mb,
        "measured_eval_peak_mb": measured["peak_mb"],
        "eval_ratio": est_eval_mb / measured["peak_mb"],
        "eval_rss_before_mb": measured["rss_before_mb"],
        "eval_end": measured["end"],
        "eval_seconds": measured["eval_seconds"],
        "evals_passed": measured["passed"],
        "est_eval_variable_gb": b.eval_memory_gb - CALIBRATION.eval_process_gb,
        "load_average_1m_before": round(load_before, 2),
        "load_average_1m_after": round(load_average()[0], 2),
    }


def run_loads(workroot: Path) -> list[dict[str, Any]]:
    """Load each local checkpoint in fp32 and bf16, and a bf16 copy of SmolLM2 in fp32 (the converting path)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tools.inputs.model_config import load_model_config, model_stats

    bf16_copy = workroot / "smollm2-bf16"
    AutoModelForCausalLM.from_pretrained(model_path(SMOLLM2), dtype=torch.bfloat16).save_pretrained(bf16_copy)
    cases = [
        ("tiny-llama fp32 -> fp32", model_path(TINY_LLAMA), "float32"),
        ("tiny-llama fp32 -> bf16", model_path(TINY_LLAMA), "bfloat16"),
        ("smollm2 fp32 -> fp32", model_path(SMOLLM2), "float32"),
        ("smollm2 fp32 -> bf16", model_path(SMOLLM2), "bfloat16"),
        ("smollm2 bf16 -> fp32", str(bf16_copy), "float32"),
        ("smollm2 bf16 -> bf16", str(bf16_copy), "bfloat16"),
    ]
    rows = []
    for name, path, dtype in cases:
        config = load_model_config(path)
        params = model_stats(config).total_params
        est_mb = model_load_gb(params, checkpoint_dtype(config), dtype) * GB / MiB
        m = _child("load", {"path": path, "dtype": dtype})
        measured = m["peak_mb"] - m["rss_before_mb"]
        rows.append(
            {
                "case": name,
                "checkpoint_dtype": checkpoint_dtype(config),
                "params": params,
                "est_load_mb": est_mb,
                "measured_load_mb": measured,
                "ratio": est_mb / measured,
                "rss_before_mb": m["rss_before_mb"],
                "after_load": m["after_load"],
            }
        )
        print(f"  load {name:26} est {est_mb:6.0f} MB, measured {measured:6.0f} MB ({est_mb / measured:.2f})")
    return rows


def run_data(workroot: Path, copies: int) -> list[dict[str, Any]]:
    """Retained RSS per token of the script's data stage, on datasets enlarged `copies` times."""
    from tools.core.spec import TrainingSpec
    from tools.inputs.dataset import dataset_stats
    from tools.inputs.tokenizer import load_tokenizer_offline
    from tools.run.render import render_script

    os.environ["AEGIS_DATA_DIRS"] = os.pathsep.join([str(workroot), str(ROOT)])  # the enlarged copies live here
    rows = []
    for source, model, packing in (
        ("data/support_train.jsonl", SMOLLM2, True),
        ("data/sample.jsonl", TINY_LLAMA, True),
        ("data/sample.jsonl", TINY_LLAMA, False),
    ):
        big = workroot / f"x{copies}-{Path(source).name}"
        big.write_text((ROOT / source).read_text(encoding="utf-8") * copies, encoding="utf-8")
        spec = TrainingSpec(model_name=model, dataset_path=str(big), seq_len=256, packing=packing, target_gpu="cpu")
        tokens = dataset_stats(big, "auto", load_tokenizer_offline(model), 256).tokens
        rendered = render_script(
            spec,
            workroot / f"data-{big.stem}-{packing}",
            model_path=model_path(model),
            dataset_path=big,
            eval_dataset_path=None,
        )
        m = _child("data", {"script": str(rendered.script_path), "config": str(rendered.config_path)})
        per_token = (m["rss_after_mb"] - m["rss_before_mb"]) * MiB / tokens
        rows.append({"dataset": big.name, "packing": packing, "tokens": tokens, "bytes_per_token": per_token, **m})
        print(f"  data {big.name:28} packing={packing!s:5} {tokens:>9,} tokens, {per_token:6.1f} B/token retained")
    return rows


def run_tokenizers() -> list[dict[str, Any]]:
    rows = []
    for model in (TINY_LLAMA, SMOLLM2):
        m = _child("tokenizer", {"path": model_path(model)})
        rows.append({"model": model, "vocab": m["vocab"], "retained_mb": m["rss_after_mb"] - m["rss_before_mb"]})
        print(f"  tokenizer {model:30} {m['vocab']:>7,} entries, {rows[-1]['retained_mb']:5.1f} MB retained")
    return rows


def run_logits() -> list[dict[str, Any]]:
    rows = []
    for seq_len in (256, 512):
        m = _child("logits", {"path": model_path(SMOLLM2), "seq_len": seq_len})
        copy_mb = seq_len * m["vocab"] * 4 / MiB
        copies = (m["peak_mb"] - m["rss_before_mb"]) / copy_mb
        rows.append({"model": SMOLLM2, "seq_len": seq_len, "logits_copy_mb": copy_mb, "copies": copies, **m})
        print(f"  logits {SMOLLM2} seq_len {seq_len}: peak {copies:.2f} x the {copy_mb:.0f} MB of one row's logits")
    return rows


def _error(rows: list[dict[str, Any]], key: str, label: str) -> dict[str, Any]:
    """Median and worst |estimated/measured - 1| over rows, naming the worst."""
    errors = [abs(r[key] - 1.0) for r in rows]
    worst = max(range(len(rows)), key=lambda i: errors[i])
    return {
        "median_abs_error": statistics.median(errors),
        "worst_abs_error": errors[worst],
        "worst": rows[worst][label],
    }


def fit(report: dict[str, Any]) -> dict[str, float]:
    """The constants the runs imply: eval process term (peak minus the estimate's variable part), bytes per token."""
    out = {}
    if report["eval_jobs"]:
        out["eval_process_gb"] = statistics.median(
            r["measured_eval_peak_mb"] * MiB / GB - r["est_eval_variable_gb"] for r in report["eval_jobs"]
        )
    if report["data"]:
        out["host_bytes_per_token"] = statistics.median(r["bytes_per_token"] for r in report["data"])
    if len(report["tokenizers"]) == 2:
        small, large = report["tokenizers"]
        extra = (large["retained_mb"] - small["retained_mb"]) * MiB
        out["tokenizer_bytes_per_vocab"] = extra / (large["vocab"] - small["vocab"])
    if report["logits"]:
        out["eval_logits_copies"] = statistics.median(r["copies"] for r in report["logits"])
    return out


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# Host RAM and eval-phase memory on {m['cpu']}, {report['date']}",
        "",
        f"{m['cores']} cores, {m['memory_gb']} GB, torch {m['torch']}, transformers {m['transformers']}. "
        f"Load average (1 min) at start {report['load_average_start'][0]:.2f}, at end {report['load_average_end'][0]:.2f}.",
        f"Command: `{report['command']}`",
        "",
    ]
    if report["eval_jobs"]:
        lines += [
            "## Eval phase and training host RAM (cpu)",
            "",
            "| Job | Params | Eval est. MB | Eval peak MB | Ratio | Host RAM est. MB | Train peak MB | Ratio "
            "| Eval s | Load 1m before/after |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in report["eval_jobs"]:
            lines.append(
                f"| {r['job']['name']} | {r['total_params'] / 1e6:.1f}M | {r['est_eval_mb']:.0f} "
                f"| {r['measured_eval_peak_mb']:.0f} | {r['eval_ratio']:.2f} | {r['est_host_ram_mb']:.0f} "
                f"| {r['measured_train_peak_mb']:.0f} | {r['host_ratio']:.2f} | {r['eval_seconds']:.0f} "
                f"| {r['load_average_1m_before']:.2f} / {r['load_average_1m_after']:.2f} |"
            )
        lines.append("")
    if report["loads"]:
        lines += [
            "## Model load (from_pretrained, then every weight read), RSS above the imports",
            "",
            "| Case | Params | Est. MB | Measured MB | Ratio |",
            "|---|---|---|---|---|",
        ]
        for r in report["loads"]:
            lines.append(
                f"| {r['case']} | {r['params'] / 1e6:.1f}M | {r['est_load_mb']:.0f} | {r['measured_load_mb']:.0f} "
                f"| {r['ratio']:.2f} |"
            )
        lines.append("")
    if report["data"]:
        lines += [
            "## Dataset in the training script (retained RSS)",
            "",
            "| Dataset | Packing | Tokens | Retained MB | Bytes per token |",
            "|---|---|---|---|---|",
        ]
        for r in report["data"]:
            retained = r["rss_after_mb"] - r["rss_before_mb"]
            lines.append(
                f"| {r['dataset']} | {r['packing']} | {r['tokens']:,} | {retained:.0f} | {r['bytes_per_token']:.1f} |"
            )
        lines.append("")
    if report["tokenizers"]:
        lines += ["## Tokenizer (retained RSS)", "", "| Model | Vocabulary | Retained MB |", "|---|---|---|"]
        lines += [f"| {r['model']} | {r['vocab']:,} | {r['retained_mb']:.1f} |" for r in report["tokenizers"]]
        lines.append("")
    if report["logits"]:
        lines += [
            "## Held-out loss pass (peak above the resident set, in copies of one row's fp32 logits)",
            "",
            "| Model | seq_len | One copy MB | Copies |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['model']} | {r['seq_len']} | {r['logits_copy_mb']:.0f} | {r['copies']:.2f} |"
            for r in report["logits"]
        ]
        lines.append("")
    lines += ["| Error (\\|est/meas - 1\\|) | Median | Worst | Worst case |", "|---|---|---|---|"]
    for key, label in (("eval", "eval-phase peak"), ("host", "training host RAM (cpu)"), ("load", "model load")):
        if key in report["summary"]:
            v = report["summary"][key]
            lines.append(f"| {label} | {v['median_abs_error']:.1%} | {v['worst_abs_error']:.1%} | {v['worst']} |")
    implied = ", ".join(f"{k} {v:.3g}" for k, v in report["fit"].items())
    lines += ["", f"Constants these runs imply: {implied}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="eval job names (prefix match)")
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-data", action="store_true")
    parser.add_argument("--skip-parts", action="store_true", help="skip the tokenizer and logits measurements")
    parser.add_argument("--data-copies", type=int, default=40, help="how many times the data files are repeated")
    parser.add_argument("--no-save", action="store_true", help="print only; write nothing to bench/results/")
    for kind in ("eval", "load", "data", "tokenizer", "logits"):
        parser.add_argument(f"--child-{kind}", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    children = {
        "eval": child_eval,
        "load": child_load,
        "data": child_data,
        "tokenizer": child_tokenizer,
        "logits": child_logits,
    }
    for kind, run in children.items():
        payload = getattr(args, f"child_{kind}")
        if payload is not None:
            print(json.dumps(run(json.loads(payload))))
            return 0
    jobs = [j for j in JOBS if not args.only or any(j.name.startswith(p) for p in args.only)]
    load_start = load_average()
    print(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aegis-bench-eval-") as tmp:
        workroot = Path(tmp)
        eval_jobs = []
        for job in [] if args.skip_eval else jobs:
            print(f"running {job.name} ...", flush=True)
            r = run_eval_job(job, workroot)
            eval_jobs.append(r)
            print(
                f"  eval {r['est_eval_mb']:.0f}/{r['measured_eval_peak_mb']:.0f} MB ({r['eval_ratio']:.2f}), "
                f"host RAM {r['est_host_ram_mb']:.0f}/{r['measured_train_peak_mb']:.0f} MB ({r['host_ratio']:.2f}), "
                f"eval {r['eval_seconds']:.0f} s, load {r['load_average_1m_before']}->{r['load_average_1m_after']}",
                flush=True,
            )
        loads = [] if args.skip_load else run_loads(workroot)
        data = [] if args.skip_data else run_data(workroot, args.data_copies)
    tokenizers = [] if args.skip_parts else run_tokenizers()
    logits = [] if args.skip_parts else run_logits()
    load_end = load_average()
    summary = {}
    if eval_jobs:
        for r in eval_jobs:
            r["name"] = r["job"]["name"]
        summary["eval"] = _error(eval_jobs, "eval_ratio", "name")
        summary["host"] = _error(eval_jobs, "host_ratio", "name")
    if loads:
        summary["load"] = _error(loads, "ratio", "case")
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "calibration": asdict(CALIBRATION),
        "machine": machine(),
        "command": "python bench/eval_memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "wall_s": time.monotonic() - started,
        "load_average_start": load_start,
        "load_average_end": load_end,
        "eval_jobs": eval_jobs,
        "loads": loads,
        "data": data,
        "tokenizers": tokenizers,
        "logits": logits,
        "summary": summary,
    }
    report["fit"] = fit(report)
    print()
    for key, v in summary.items():
        print(f"{key:5} median |err| {v['median_abs_error']:.1%}, worst {v['worst_abs_error']:.1%} ({v['worst']})")
    print("implied: " + ", ".join(f"{k} {v:.4g}" for k, v in report["fit"].items()))
    print(f"load average at end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    if not args.no_save:
        save_results("eval-memory-cpu", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
