"""Real checks on a trained model: did it learn, overfit, leak, degenerate, pick up the taught format?

Every number is measured on the trained model and the base model it came from; nothing is taken on trust from
the training log except the train loss curve, and every check can fail. The measuring runs in a sandboxed
worker (tools.evals.worker), the only process that loads the models; this side reads the rows, chooses the
thresholds, passes the worker's phase events on, stops it when asked, and reads back its EvalResult as data.
The checks live in tools.evals.checks, the thresholds in tools.evals.thresholds.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tools.core.errors import AegisError
from tools.core.spec import EvalResult, ExecutionResult, TrainingSpec
from tools.evals.examples import read_records
from tools.evals.judge import judge_check
from tools.evals.progress import EvalProgress
from tools.evals.sandboxed import model_folder, worker_command, worker_failure
from tools.evals.thresholds import EvalThresholds
from tools.evals.worker import PROGRESS_FILE, RESULT_FILE, EvalRequest
from tools.run.local import MetricsTail, kill_group
from tools.run.sandbox import Mounts, paths_of, start_contained

REQUEST_FILE = "request.json"
LOG_FILE = "worker.log"
GENERAL_SET = Path(__file__).with_name("general_set.jsonl")
POLL_S = 0.2


def run_evals(
    spec: TrainingSpec,
    result: ExecutionResult,
    *,
    base_model_path: str,
    train_records: list[dict[str, Any]],
    thresholds: EvalThresholds,
    progress: EvalProgress | None = None,
    heldout: list[dict[str, Any]] | None = None,
) -> EvalResult:
    """Measure the trained model in result.output_dir against its base on the held-out rows and the training data.

    Bounded by max_heldout_rows (two forward passes each), the leak probes and n_generations x max_new_tokens;
    ``progress`` reports each phase as it goes, keeps its time and learns the worker's isolation. ``heldout``, when
    given, replaces the rows the run held out (``aegis evaluate RUN --eval-data FILE``). Raises
    IsolationRefused, with nothing started, where the model's own code must run isolated and cannot be.
    """
    progress = progress or EvalProgress()
    if not result.output_dir:
        raise AegisError("the training attempt has no output folder to evaluate")
    out = Path(result.output_dir)
    final = (out / "final").resolve()  # the sandbox binds real folders, not the links to them
    if not final.is_dir():
        raise AegisError(f"no trained model at '{final}': the training attempt did not save one")
    request = EvalRequest(
        spec=spec,
        result=result,
        final_dir=str(final),
        base_model_path=model_folder(base_model_path),
        heldout=(_heldout_rows(spec, out) if heldout is None else heldout)[: thresholds.max_heldout_rows],
        general=general_set(thresholds),
        train_records=train_records,
        thresholds=thresholds,
    )
    with tempfile.TemporaryDirectory(prefix="aegis-evals-") as scratch:
        measured = _measure_contained(request, Path(scratch).resolve(), progress)
    return _with_judges(spec, measured, progress)


def _with_judges(spec: TrainingSpec, measured: EvalResult, progress: EvalProgress) -> EvalResult:
    """The declared LLM judges, here where the network is, graded on the worker's replies; the verdict again."""
    judges = [check for check in spec.evals if check.kind == "llm_judge"]
    if not judges:
        return measured
    with progress.phase("judge", len(judges)) as tick:
        checks = list(measured.checks)
        for check in judges:
            checks.append(judge_check(check, measured.generations))
            tick()
    return measured.model_copy(update={"checks": checks, "passed": EvalResult.gates_pass(checks)})


def general_set(t: EvalThresholds) -> list[dict[str, Any]]:
    """The forgetting check's rows: the operator's JSONL (forgetting_set) or the bundled one, at most forgetting_rows.

    Each row holds a prompt, a reference ``completion`` and the ``answers`` accepted in a reply (default: the
    reference itself); none when the operator switched the check off.
    """
    if not t.forgetting_check:
        return []
    path = t.forgetting_set or GENERAL_SET
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AegisError(f"forgetting set '{path}' cannot be read: {str(exc).splitlines()[0]}") from None
    general = []
    for i, row in enumerate(rows[: t.forgetting_rows], start=1):
        if not isinstance(row, dict) or not str(row.get("prompt") or "").strip() or not row.get("completion"):
            raise AegisError(f"forgetting set '{path}' row {i} needs a 'prompt' and a 'completion'")
        answers = row.get("answers") or [row["completion"]]
        general.append({"prompt": row["prompt"], "completion": str(row["completion"]), "answers": list(answers)})
    return general


def _measure_contained(request: EvalRequest, scratch: Path, progress: EvalProgress) -> EvalResult:
    """The worker in the sandbox: the models read-only; only ``scratch`` (its request, events, result) writable."""
    request_path = scratch / REQUEST_FILE
    request_path.write_text(request.model_dump_json(), encoding="utf-8")
    mounts = Mounts(
        read_only=paths_of([request.final_dir, request.base_model_path]),
        writable=(scratch,),
        remote_code=request.spec.trust_remote_code,
    )
    tail = MetricsTail(scratch / PROGRESS_FILE)
    with open(scratch / LOG_FILE, "wb") as log:
        cmd = worker_command("tools.evals.worker", str(request_path))
        contained = start_contained(cmd, mounts, cwd=scratch, stdout=log)
        progress.isolation = contained.isolation
        try:
            _follow(contained.proc, tail, progress)
        finally:
            kill_group(contained.proc)  # done, stopped, or a failing callback: nothing of it stays behind
    result_path = scratch / RESULT_FILE
    if contained.proc.returncode != 0 or not result_path.is_file():
        log_text = (scratch / LOG_FILE).read_text(encoding="utf-8", errors="replace")
        raise worker_failure("the eval worker", log_text, contained.proc.returncode)
    return EvalResult.model_validate_json(result_path.read_text(encoding="utf-8"))


def _follow(proc: subprocess.Popen[bytes], tail: MetricsTail, progress: EvalProgress) -> None:
    """Pass the worker's phase events on until it exits; a stop asked for ends it (EvalStopped)."""
    while True:
        try:
            proc.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            pass
        for event in tail.read_new():
            progress.relay(event)
        if proc.returncode is not None:
            return
        progress.check_stop()


def _heldout_rows(spec: TrainingSpec, out: Path) -> list[dict]:
    """The rows the training script held out (it saves them), else the spec's eval dataset, else none."""
    heldout_file = out / "heldout.jsonl"
    if heldout_file.is_file():
        return read_records(heldout_file)
    if spec.eval_dataset_path:
        return read_records(Path(spec.eval_dataset_path))
    return []
