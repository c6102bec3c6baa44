"""Measure what a formula cannot know: a few real steps of the rendered script on the real model, on this CPU.

A CPU's speed depends on its instruction set, its caches, its cores and the other load on it: the catalog's
one figure was measured on another CPU, and whether bf16 or fp32 runs faster differs from one CPU to the next
(1.66x either way between two machines this project ran on). So before a CPU run is estimated, the real script
trains ``PROBE_STEPS`` steps of one micro-batch on the real model and data; with ``precision: auto`` in each
precision this CPU can run, and the faster one is kept. The result is cached per machine, model and shape.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import statistics
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tools.core.errors import AegisError
from tools.core.measured import MeasuredTime
from tools.core.paths import aegis_home
from tools.core.runlog import write_cache_entry
from tools.core.settings import settings
from tools.core.spec import TrainingSpec
from tools.core.status import AttemptStatus
from tools.core.stop import StopCheck
from tools.inputs.local_models import resolve_model
from tools.inputs.prepared import PreparedData
from tools.recipe.precision import cpu_supports_bf16
from tools.run.local import MetricsTail, run_local
from tools.run.render import render_script, render_source
from tools.run.sandbox import available_cores

PROBE_STEPS = 4  # the first is warm-up (allocations, lazy kernels); the other three are timed
PROBE_TIMEOUT_S = 300.0


class ProbeRun(BaseModel):
    """One precision's measurement."""

    model_config = ConfigDict(extra="forbid")

    precision: str
    micro_seconds: float
    startup_seconds: float


def machine_id() -> str:
    """The CPU model, the cores this process may use and torch's version: what a CPU measurement depends on."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or 'unknown CPU'}, {available_cores()} cores, torch {version('torch')}"


def candidate_precisions(spec: TrainingSpec) -> list[str]:
    """auto: fp32, and bf16 where this CPU has native bf16 instructions; otherwise what the person asked for."""
    if spec.precision != "auto":
        return [spec.precision]
    return ["fp32", "bf16"] if cpu_supports_bf16() else ["fp32"]


def _probe_key(spec: TrainingSpec, data: PreparedData, model_path: str) -> str:
    shape = spec.model_dump(
        mode="json",
        include={
            "model_name",
            "method",
            "micro_batch_size",
            "seq_len",
            "packing",
            "gradient_checkpointing",
            "lora_r",
            "lora_target_modules",
            "precision",
            "dataset_format",
        },
    )
    material = {
        "machine": machine_id(),
        "script": hashlib.sha256(render_source().encode()).hexdigest(),
        "model": model_path,
        "shape": shape,
        # Padded rows take as long as they are long; packed ones always fill seq_len.
        "data": None if spec.packing else data.digest,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:24]


def _probe_one(
    spec: TrainingSpec, data: PreparedData, model_path: str, workdir: Path, precision: str, stop: StopCheck | None
) -> ProbeRun:
    """PROBE_STEPS steps of one micro-batch each, no evals: the micro-batch's seconds and the fixed start."""
    probe_spec = spec.model_copy(update={"gradient_accumulation_steps": 1, "eval_split": 0.0})
    rendered = render_script(
        probe_spec,
        workdir,
        model_path=model_path,
        dataset_path=Path(data.train_copy),
        eval_dataset_path=None,
        device="cpu",
        extra={"max_steps": PROBE_STEPS, "precision": precision},
    )
    result = run_local(probe_spec, workdir, rendered, timeout_s=PROBE_TIMEOUT_S, memory_limit_mb=None, should_stop=stop)
    if result.status == AttemptStatus.INTERRUPTED:
        raise AegisError("the probe was stopped: a stop was requested")
    timing = step_timing(rendered.metrics_path, result.duration_s) if result.status == AttemptStatus.SUCCEEDED else None
    if timing is None:
        raise AegisError(f"the probe run failed ({result.failure_class}): {result.error_message or 'no error text'}")
    return ProbeRun(precision=precision, micro_seconds=timing.step_seconds, startup_seconds=timing.startup_seconds)


@dataclass(frozen=True)
class StepTiming:
    """What a finished run's metrics say about its speed."""

    step_seconds: float  # median interval between steps: the first step (warm-up) only starts the clock
    startup_seconds: float  # the run's wall time less the script's own train_seconds
    steps: int
    dtype: str | None


def step_timing(metrics_path: Path, duration_s: float) -> StepTiming | None:
    """Seconds per step and the fixed start, from a finished run's metrics; None with fewer than two steps."""
    records = MetricsTail(metrics_path).read_new()
    elapsed = [float(r["elapsed_s"]) for r in records if r.get("type") == "step"]
    end = next((r for r in records if r.get("type") == "end"), None)
    if len(elapsed) < 2 or end is None:
        return None
    return StepTiming(
        step_seconds=statistics.median(b - a for a, b in zip(elapsed, elapsed[1:], strict=False)),
        startup_seconds=max(duration_s - float(end["train_seconds"]), 0.0),
        steps=len(elapsed),
        dtype=end.get("dtype"),
    )


def _cache_dir() -> Path:
    """Beside the pre-flight results: like them, a measurement of this machine that stays true until it changes."""
    return (settings().preflight_cache or aegis_home() / "preflight").expanduser() / "probes"


def probe_cpu(
    spec: TrainingSpec, data: PreparedData, workdir: Path, *, should_stop: StopCheck | None = None
) -> MeasuredTime:
    """The measured step and startup of this spec on this CPU, in the faster precision; cached.

    Raises AegisError when the real model cannot run here; the caller then falls back to the modelled time.
    """
    model_path = resolve_model(spec.model_name).path
    key = _probe_key(spec, data, model_path)
    cache = _cache_dir() / f"{key}.json"
    try:
        cached: MeasuredTime | None = MeasuredTime.model_validate_json(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = None  # none yet, or torn, foreign or unreadable: measure again; the new entry replaces it whole
    if cached is not None:
        return cached.model_copy(update={"took_seconds": 0.0})  # nothing ran this time
    started = time.monotonic()
    runs = [_probe_one(spec, data, model_path, workdir / p, p, should_stop) for p in candidate_precisions(spec)]
    best = min(runs, key=lambda r: r.micro_seconds)
    compared = ", ".join(f"{r.precision} {r.micro_seconds:.2f} s" for r in runs)
    source = (
        f"measured: {PROBE_STEPS} steps of the real script on this CPU ({machine_id()}), one micro-batch "
        f"{compared}; {dt.date.today().isoformat()}"
    )
    measured = MeasuredTime(
        step_seconds=best.micro_seconds * spec.gradient_accumulation_steps,
        startup_seconds=best.startup_seconds,
        precision=best.precision,
        source=source,
        took_seconds=time.monotonic() - started,
    )
    write_cache_entry(cache, measured.model_dump_json())
    return measured
