"""The evals' worker: ``python -m tools.evals.worker REQUEST.json``, started in the sandbox by run_evals.

The models (and any code they ship) are loaded only here, never in the aegis process. Every number is measured on
the trained model and its base; the checks are judged with the thresholds the request carries. Beside the request
it writes its phase events (progress.jsonl, one JSON line each) and the EvalResult (result.json); an error ends it
with an ``AEGIS-ERROR`` line in its log.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tools.core.spec import EvalCheck, EvalResult, ExecutionResult, TrainingSpec
from tools.evals.checks import format_check, leak_check, loss_checks
from tools.evals.custom import custom_checks
from tools.evals.examples import Example, encode_text, record_format, to_example
from tools.evals.formats import FormatSignature, format_signature, repetition_ratio
from tools.evals.models import ModelPair, generate, heldout_loss, load_pair
from tools.evals.progress import EvalProgress
from tools.evals.sandboxed import say_failure
from tools.evals.scoring import mean
from tools.evals.task_checks import (
    MODELS,
    annotate,
    degenerate_check,
    forgetting_check,
    general_row,
    score_general,
    task_metrics,
    task_score_check,
)
from tools.evals.thresholds import EvalThresholds
from tools.recipe.formatting import encode_record

PROGRESS_FILE = "progress.jsonl"
RESULT_FILE = "result.json"


class EvalRequest(BaseModel):
    """What the worker measures, all of it data: the parent read the rows and chose the thresholds."""

    model_config = ConfigDict(extra="forbid")

    spec: TrainingSpec
    result: ExecutionResult
    final_dir: str
    base_model_path: str
    heldout: list[dict[str, Any]]
    general: list[dict[str, Any]] = []  # the forgetting set's rows: prompt, completion, answers
    train_records: list[dict[str, Any]]
    thresholds: EvalThresholds


def measure(request: EvalRequest, progress: EvalProgress) -> EvalResult:
    """The trained model against its base on the held-out rows and the training data, judged by the thresholds.

    Bounded by the held-out rows (two forward passes each), the leak probes, n_generations x max_new_tokens and the
    general set (forgetting_rows x forgetting_new_tokens, both models).
    """
    spec, t, heldout = request.spec, request.thresholds, request.heldout
    with progress.phase("load", 1) as tick:
        pair = load_pair(Path(request.final_dir), request.base_model_path, trust_remote_code=spec.trust_remote_code)
        tick()
    formats = [record_format(spec, r) for r in heldout]
    base_eval, eval_loss = _heldout_losses(pair, spec, heldout, formats, progress)
    checks, start, end = loss_checks(request.result, base_eval, eval_loss, t)
    metrics: dict[str, float | None] = {
        "base_eval_loss": base_eval,
        "eval_loss": eval_loss,
        "base_perplexity": _ppl(base_eval),
        "perplexity": _ppl(eval_loss),
        "train_loss_start": start,
        "train_loss_end": end,
        "heldout_rows": float(len(heldout)),
    }
    if t.leak_probe:
        leak, probed = leak_check(pair, spec, request.train_records, t, progress)
        checks.append(leak)
        metrics |= {"leak_probes": float(probed), "leaks_found": float(leak.value or 0)}
    examples = [to_example(pair.tokenizer, r, f) for r, f in zip(heldout, formats, strict=True)]
    signature = format_signature([e.reference for e in examples], t.format_min_support)
    generations, reps = _generate_replies(pair, examples[: t.n_generations], signature, t, progress)
    reply_checks, reply_metrics = _reply_checks(generations, reps, signature, request)
    checks, metrics = [*checks, *reply_checks], metrics | reply_metrics
    general: list[dict[str, Any]] = []
    if t.forgetting_check:
        general = _answer_general(pair, request.general, signature, t, progress)
        forgetting, forgetting_metrics = forgetting_check(general, t)
        checks, metrics = [*checks, forgetting], metrics | forgetting_metrics
    metrics.update(progress.timing_metrics())
    return EvalResult(
        passed=EvalResult.gates_pass(checks), checks=checks, metrics=metrics, generations=generations, general=general
    )


def _reply_checks(
    generations: list[dict[str, Any]],
    reps: dict[str, list[float]],
    signature: FormatSignature,
    request: EvalRequest,
) -> tuple[list[EvalCheck], dict[str, float | None]]:
    """The checks on the held-out replies: degenerate, task score, format, and the checks the spec declares."""
    t = request.thresholds
    metrics: dict[str, float | None] = {
        "repetition_base": mean(reps["base"]),
        "repetition": mean(reps["trained"]),
        "format_signature_elements": float(signature.elements),
    }
    metrics |= task_metrics(generations)
    checks = [degenerate_check(generations, t)]
    task = task_score_check(metrics, t)
    checks += [task] if task is not None else []
    format_ok, rates = format_check(signature, generations, t)
    metrics.update(rates)
    checks += [format_ok] if format_ok is not None else []
    checks += custom_checks(request.spec.evals, generations)
    return checks, metrics


def _answer_general(
    pair: ModelPair, rows: list[dict[str, Any]], signature: FormatSignature, t: EvalThresholds, progress: EvalProgress
) -> list[dict[str, Any]]:
    """Both models answer the general set (greedy, at most forgetting_new_tokens); each answer scored."""
    answered = [general_row(str(r["prompt"]), str(r["completion"]), list(r["answers"])) for r in rows]
    tok = pair.tokenizer
    with progress.phase("general", 2 * len(answered)) as tick:
        for row in answered:
            prompt = to_example(tok, {"prompt": row["prompt"], "completion": row["reference"]}, "prompt_completion")
            prompt_ids = encode_text(tok, prompt.prompt)
            for key in MODELS:
                ctx = pair.base() if key == "base" else nullcontext(pair.trained)
                with ctx as model:
                    ids = generate(model, tok, prompt_ids, t.forgetting_new_tokens, pair.device)
                score_general(row, key, tok.decode(ids, skip_special_tokens=True), signature)
                tick()
    return answered


def _heldout_losses(
    pair: ModelPair, spec: TrainingSpec, heldout: list[dict], formats: list[str], progress: EvalProgress
) -> tuple[float | None, float | None]:
    """The base and the fine-tuned model's held-out loss on the same rows, masked as in training."""
    tok = pair.tokenizer
    encoded = [encode_record(tok, r, f, spec.seq_len)[:2] for r, f in zip(heldout, formats, strict=True)]
    with progress.phase("heldout_trained", len(encoded)) as tick:
        eval_loss = heldout_loss(pair.trained, tok, encoded, pair.device, tick)
    with progress.phase("heldout_base", len(encoded)) as tick, pair.base() as base:
        base_eval = heldout_loss(base, tok, encoded, pair.device, tick)
    return base_eval, eval_loss


def _generate_replies(
    pair: ModelPair, examples: list[Example], signature: FormatSignature, t: EvalThresholds, progress: EvalProgress
) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """Greedy replies of the base and the fine-tuned model to each prompt, with their repetition and format marks."""
    with progress.phase("generate", 2 * len(examples)) as tick:
        return _replies(pair, examples, signature, t, tick)


def _replies(
    pair: ModelPair, examples: list[Example], signature: FormatSignature, t: EvalThresholds, tick: Callable[[], None]
) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    tok = pair.tokenizer
    generations = []
    reps: dict[str, list[float]] = {"base": [], "trained": []}
    for ex in examples:
        prompt_ids = encode_text(tok, ex.prompt)
        row: dict[str, Any] = {"prompt": ex.prompt, "reference": ex.reference}
        for key in ("base", "trained"):
            ctx = pair.base() if key == "base" else nullcontext(pair.trained)
            with ctx as model:
                ids = generate(model, tok, prompt_ids, t.max_new_tokens, pair.device)
            text = tok.decode(ids, skip_special_tokens=True)
            row[key] = text
            reps[key].append(1.0 if not text.strip() else repetition_ratio(ids, t.repetition_ngram))
            annotate(row, key, text, ids, reps[key][-1], t, ex.asked)
            if signature.elements:
                row["format_ok_base" if key == "base" else "format_ok"] = signature.score(text) == 1.0
            tick()
        generations.append(row)
    return generations, reps


def _ppl(loss: float | None) -> float | None:
    return None if loss is None else math.exp(min(loss, 50.0))


def main(argv: list[str]) -> int:
    """Measure the request beside which it writes its events and result; exit 1 with an AEGIS-ERROR line on error."""
    request_path = Path(argv[0])
    folder = request_path.parent
    try:
        request = EvalRequest.model_validate_json(request_path.read_text(encoding="utf-8"))
        with open(folder / PROGRESS_FILE, "a", encoding="utf-8") as events:

            def emit(event: dict[str, Any]) -> None:
                events.write(json.dumps(event) + "\n")
                events.flush()

            result = measure(request, EvalProgress(emit))
        (folder / RESULT_FILE).write_text(result.model_dump_json(), encoding="utf-8")
    except Exception as exc:  # any failure: one line for the parent, the traceback in the log
        say_failure(exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
