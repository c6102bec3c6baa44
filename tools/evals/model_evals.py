"""Real checks on a trained model: did it learn, overfit, leak, degenerate, pick up the taught format?

Every number here is measured on the trained model and the base model it came from; nothing is taken on
trust from the training log except the train loss curve, and every check can fail. This module runs them in
order; the checks live in tools.evals.checks, the thresholds in tools.evals.thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from tools.core.errors import AegisError
from tools.core.spec import EvalResult, ExecutionResult, TrainingSpec
from tools.evals.checks import degenerate_check, format_check, leak_check, loss_checks
from tools.evals.examples import Example, encode_text, read_records, record_format, to_example
from tools.evals.formats import FormatSignature, format_signature, repetition_ratio
from tools.evals.models import ModelPair, generate, heldout_loss, load_pair
from tools.evals.progress import EvalProgress
from tools.evals.thresholds import EvalThresholds
from tools.recipe.formatting import encode_record


def run_evals(
    spec: TrainingSpec,
    result: ExecutionResult,
    *,
    base_model_path: str,
    train_records: list[dict[str, Any]],
    thresholds: EvalThresholds,
    tokenizer_path: str | None = None,
    tokenizer: Any = None,
    progress: EvalProgress | None = None,
) -> EvalResult:
    """Measure the trained model in result.output_dir against its base on the held-out rows and the training data.

    Bounded by max_heldout_rows (two forward passes each), the leak probes and n_generations x max_new_tokens;
    ``progress`` reports each phase as it goes and keeps its time."""
    t = thresholds
    progress = progress or EvalProgress()
    if not result.output_dir:
        raise AegisError("the training attempt has no output folder to evaluate")
    out = Path(result.output_dir)
    with progress.phase("load", 1) as tick:
        pair = load_pair(
            out / "final",
            base_model_path,
            tokenizer_path=tokenizer_path,
            tokenizer=tokenizer,
            trust_remote_code=spec.trust_remote_code,
        )
        tick()
    tok = pair.tokenizer
    heldout = _heldout_rows(spec, out)[: t.max_heldout_rows]
    formats = [record_format(spec, r) for r in heldout]
    base_eval, eval_loss = _heldout_losses(pair, spec, heldout, formats, progress)
    checks, start, end = loss_checks(result, base_eval, eval_loss, t)
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
        leak, probed = leak_check(pair, spec, train_records, t, progress)
        checks.append(leak)
        metrics |= {"leak_probes": float(probed), "leaks_found": float(leak.value or 0)}

    examples = [to_example(tok, r, f) for r, f in zip(heldout, formats, strict=True)]
    signature = format_signature([e.reference for e in examples], t.format_min_support)
    generations, reps = _generate_replies(pair, examples[: t.n_generations], signature, t, progress)
    degenerate, repetition = degenerate_check(generations, reps, t)
    checks, metrics = [*checks, degenerate], metrics | repetition
    metrics["format_signature_elements"] = float(signature.elements)
    format_ok, rates = format_check(signature, generations, t)
    metrics.update(rates)
    if format_ok is not None:
        checks.append(format_ok)
    metrics.update(progress.timing_metrics())
    return EvalResult(passed=all(c.passed for c in checks), checks=checks, metrics=metrics, generations=generations)


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


def _heldout_rows(spec: TrainingSpec, out: Path) -> list[dict]:
    """The rows the training script held out (it saves them), else the spec's eval dataset, else none."""
    heldout_file = out / "heldout.jsonl"
    if heldout_file.is_file():
        return read_records(heldout_file)
    if spec.eval_dataset_path:
        return read_records(Path(spec.eval_dataset_path))
    return []


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
            if signature.elements:
                row["format_ok_base" if key == "base" else "format_ok"] = signature.score(text) == 1.0
            tick()
        generations.append(row)
    return generations, reps


def _ppl(loss: float | None) -> float | None:
    return None if loss is None else math.exp(min(loss, 50.0))
