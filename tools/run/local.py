"""Run a rendered training script on this machine, in a sandboxed subprocess.

The sandbox: its own working folder, its own process group (a timeout or Ctrl-C kills the
script and anything it started), a wall-clock limit, a memory limit, and an environment with
the secrets taken out. Everything in the result is read from the script's own metrics and log.

Memory limit: RLIMIT_DATA, not RLIMIT_AS. Since Linux 4.7 RLIMIT_DATA counts the private
writable memory a process maps (heap and anonymous mmaps; not shared library code), which for
this script tracks its resident memory: measured on the tiny LoRA run, VmData 497 MB against a
peak RSS of 496 MB. Its address space is 1.5 GB (VmPeak) from mapped libraries alone, so an
RLIMIT_AS cap would either kill a healthy run or have to be padded by a guess. One setting makes
this hold: pyarrow's default mimalloc pool reserves 1 GB of writable address space at import
(VmData 1.2 GB for `import datasets`), so the child runs with ARROW_DEFAULT_MEMORY_POOL=system.
Over the limit, torch's allocator fails ("DefaultCPUAllocator: can't allocate memory") or Python
raises MemoryError; the script catches both and exits with the OOM code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from tools.core.isolation import IsolationFacts
from tools.core.spec import ExecutionResult, TrainingSpec
from tools.core.status import FailureClass
from tools.core.stop import StopCheck
from tools.run.failures import classify_failure, error_lines
from tools.run.render import RenderedScript
from tools.run.sandbox import Contained, Mounts, paths_of, start_contained
from tools.run.watchdog import Watchdog

POLL_S = 0.2
KILL_GRACE_S = 5.0
LOG_TAIL_BYTES = 20_000


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:  # the group is already empty
        pass


def kill_group(proc: subprocess.Popen[bytes], grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM the whole process group, SIGKILL it after the grace period, then SIGKILL any child left behind."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
    _signal_group(proc.pid, signal.SIGKILL)


def _tree_rss_mb(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


class MetricsTail:
    """Reads the JSON lines a running script appends, a complete line at a time."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.records: list[dict[str, Any]] = []

    def read_new(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        new = []
        for line in chunk[:end].decode("utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                new.append(record)
        self.records.extend(new)
        return new


def _read_tail(path: Path) -> str:
    if not path.exists():
        return ""
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
        return fh.read().decode("utf-8", errors="replace")


def run_local(
    spec: TrainingSpec,
    workdir: Path,
    rendered: RenderedScript,
    *,
    timeout_s: float,
    memory_limit_mb: int | None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    gpu_price_usd_per_sec: float = 0.0,
    estimated_gpu_cost_usd: float | None = None,
    should_stop: StopCheck | None = None,
    on_start: Callable[[int], None] | None = None,
    outer: IsolationFacts | None = None,
) -> ExecutionResult:
    """Run one attempt to its end, its time limit, a stop request or Ctrl-C, and report what really happened.

    on_start: called with the child's pid (its process group) as soon as it runs: the caller's own watchdog
    hook (an attempt's, which books the attempt after a kill). Without one, a watchdog with nothing to book
    guards the run here, so no caller (the smoke run, the probe) can leave a training behind if aegis is killed.
    outer: the isolation this process already runs in (a Modal container), else the local sandbox, which may
    refuse (IsolationRefused, nothing started) where the run must be isolated and cannot be."""
    workdir = Path(workdir)
    log_path = workdir / "train.log"
    rendered.metrics_path.unlink(missing_ok=True)  # this attempt's lines only
    tail = MetricsTail(rendered.metrics_path)
    watch = _Watch(started=time.monotonic(), timeout_s=timeout_s)
    with open(log_path, "wb") as log:
        started = _start(spec, rendered, log, memory_limit_mb, outer)
        proc = started.proc
        guard: Watchdog | None = None
        try:
            if on_start is not None:
                on_start(proc.pid)
            else:
                guard = Watchdog.start(proc.pid, [])
            watch.follow(proc, tail, on_progress, should_stop)
        except KeyboardInterrupt:
            watch.interrupted = True
        finally:
            # Always: a timeout, Ctrl-C, a failing callback, or stray children of a finished script.
            kill_group(proc)
            if guard is not None:
                guard.release()
    duration = time.monotonic() - watch.started
    tail.read_new()
    return result_from_records(
        spec,
        rendered,
        tail.records,
        exit_code=proc.returncode,
        log_path=log_path,
        duration=duration,
        timed_out=watch.timed_out,
        interrupted=watch.interrupted,
        timeout_s=timeout_s,
        memory_limit_mb=memory_limit_mb,
        sampled_peak_mb=watch.peak_mb,
        gpu_price_usd_per_sec=gpu_price_usd_per_sec,
        estimated_gpu_cost_usd=estimated_gpu_cost_usd,
    ).model_copy(update={"isolation": started.isolation.kind})


def _command(spec: TrainingSpec, rendered: RenderedScript) -> list[str]:
    """python train.py --config ...; with several GPUs, under torchrun with one process per GPU."""
    cmd = [sys.executable, str(rendered.script_path), "--config", str(rendered.config_path)]
    if spec.num_gpus > 1:  # the script turns on DDP when WORLD_SIZE > 1
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={spec.num_gpus}"]
        return [*launcher, *cmd[1:]]
    return cmd


def training_mounts(spec: TrainingSpec, rendered: RenderedScript) -> Mounts:
    """What the script may see: the model, the data and a checkpoint to resume from, read-only; its attempt folder."""
    config = rendered.config
    inputs = paths_of(
        config.get(key) for key in ("model_path", "dataset_path", "eval_dataset_path", "resume_from", "init_adapter")
    )
    return Mounts(read_only=inputs, writable=(rendered.workdir,), remote_code=spec.trust_remote_code)


def _start(
    spec: TrainingSpec,
    rendered: RenderedScript,
    log: IO[bytes],
    memory_limit_mb: int | None,
    outer: IsolationFacts | None,
) -> Contained:
    """The script in the sandbox, in its own session (so its whole group can be killed), its output in the log."""
    return start_contained(
        _command(spec, rendered),
        training_mounts(spec, rendered),
        cwd=rendered.workdir,
        stdout=log,
        memory_limit_mb=memory_limit_mb,
        outer=outer,
    )


@dataclass
class _Watch:
    """What watching the child found; kept outside the loop so Ctrl-C in the middle of it loses nothing."""

    started: float
    timeout_s: float
    timed_out: bool = False
    interrupted: bool = False
    peak_mb: float = 0.0

    def follow(
        self,
        proc: subprocess.Popen[bytes],
        tail: MetricsTail,
        on_progress: Callable[[dict[str, Any]], None] | None,
        should_stop: StopCheck | None,
    ) -> None:
        """Poll until the child exits, a stop is requested or the time is up; pass step records on as they land."""
        while True:
            try:
                proc.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                pass
            self.peak_mb = max(self.peak_mb, _tree_rss_mb(proc.pid))
            for record in tail.read_new():
                if on_progress is not None and record.get("type") == "step":
                    on_progress(record)
            if proc.returncode is not None:
                return
            if should_stop is not None and should_stop():
                self.interrupted = True
                return
            if time.monotonic() - self.started > self.timeout_s:
                self.timed_out = True
                return


def result_from_records(
    spec: TrainingSpec,
    rendered: RenderedScript,
    records: list[dict[str, Any]],
    *,
    exit_code: int | None,
    log_path: Path,
    duration: float,
    timed_out: bool,
    interrupted: bool,
    timeout_s: float,
    memory_limit_mb: int | None,
    sampled_peak_mb: float,
    gpu_price_usd_per_sec: float,
    estimated_gpu_cost_usd: float | None,
) -> ExecutionResult:
    """Fill an ExecutionResult from the metrics lines and the log."""
    start = next((r for r in records if r.get("type") == "start"), {})
    steps = [r for r in records if r.get("type") == "step" and isinstance(r.get("loss"), int | float)]
    evals = [r for r in records if r.get("type") == "eval" and isinstance(r.get("eval_loss"), int | float)]
    end = next((r for r in reversed(records) if r.get("type") == "end"), {})
    last = steps[-1] if steps else {}
    if interrupted:
        status, failure, message = "interrupted", "interrupted", f"stopped on request after {last.get('step', 0)} steps"
    elif exit_code == 0 and end.get("status") == "completed" and not timed_out:
        status, failure, message = "succeeded", None, None
    else:
        status = "failed"
        failure, message = _failure(exit_code, log_path, timed_out, timeout_s, memory_limit_mb, last, start)
    device = rendered.config.get("device", "cpu")
    return ExecutionResult(
        status=status,
        failure_class=failure,
        error_message=message,
        exit_code=exit_code,
        executor="local",
        gpu="cpu" if device == "cpu" else spec.target_gpu,
        num_gpus=spec.num_gpus,
        loss_curve=[(int(r["step"]), float(r["loss"])) for r in steps],
        initial_train_loss=float(steps[0]["loss"]) if steps else None,
        final_train_loss=float(last["loss"]) if steps else None,
        initial_eval_loss=float(evals[0]["eval_loss"]) if evals and evals[0].get("step") == 0 else None,
        final_eval_loss=float(evals[-1]["eval_loss"]) if evals and evals[-1].get("step", 0) > 0 else None,
        steps_completed=int(last.get("step", 0)),
        total_steps=int(start.get("total_steps", 0)),
        resumed_from_step=int(start.get("start_step", 0)),
        train_tokens=int(end.get("tokens", last.get("tokens", 0))),
        duration_s=duration,
        tokens_per_s=float(end.get("tokens_per_s", last.get("tokens_per_s", 0.0))),
        peak_memory_mb=float(end.get("peak_mem_mb", last.get("peak_mem_mb", sampled_peak_mb))),
        actual_cost_usd=duration * gpu_price_usd_per_sec,
        estimated_gpu_cost_usd=estimated_gpu_cost_usd,
        output_dir=str(rendered.output_dir),
        log_path=str(log_path),
    )


def _failure(
    exit_code: int | None,
    log_path: Path,
    timed_out: bool,
    timeout_s: float,
    memory_limit_mb: int | None,
    last: dict[str, Any],
    start: dict[str, Any],
) -> tuple[FailureClass, str]:
    """The failure class and the message a person reads, from the exit code and the end of the log."""
    log_tail = _read_tail(log_path)
    failure = classify_failure(exit_code, log_tail, timed_out=timed_out, memory_limited=memory_limit_mb is not None)
    if timed_out:
        message = f"timed out after {timeout_s:g}s, {last.get('step', 0)} of {start.get('total_steps', '?')} steps done"
    elif failure == "oom" and exit_code == -signal.SIGKILL:
        message = f"killed by SIGKILL at the memory limit of {memory_limit_mb} MB"
    else:
        message = error_lines(log_tail) or f"the script exited with code {exit_code} without finishing"
    return failure, message
