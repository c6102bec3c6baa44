"""The eval checks as a person reads them: each one named, measured, with its threshold and a detail line.

Every check can fail. Names, values, thresholds and details are what the report and the job log show.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from tools.core.spec import EvalCheck, ExecutionResult, TrainingSpec
from tools.evals.examples import encode_text
from tools.evals.formats import FormatSignature
from tools.evals.leaks import CANARY_PREFIX, control_canary, leaked, mask, scan_secrets
from tools.evals.models import ModelPair, generate
from tools.evals.progress import EvalProgress
from tools.evals.thresholds import EvalThresholds

# ---------------------------------------------------------------- loss


def smoothed_ends(curve: list[tuple[int, float]]) -> tuple[float, float] | None:
    """Mean of the first and of the last few losses, so one noisy step neither passes nor fails the check."""
    losses = [loss for _, loss in sorted(curve) if math.isfinite(loss)]
    if len(losses) < 2:
        return None
    k = max(1, min(5, len(losses) // 5))
    return sum(losses[:k]) / k, sum(losses[-k:]) / k


def train_loss_ends(result: ExecutionResult) -> tuple[float | None, float | None]:
    """The smoothed start and end of the train loss curve; the first and last loss when the curve is too short."""
    ends = smoothed_ends(result.loss_curve)
    if ends is None and result.initial_train_loss is not None and result.final_train_loss is not None:
        ends = (result.initial_train_loss, result.final_train_loss)
    return ends if ends else (None, None)


def loss_checks(
    result: ExecutionResult, base_eval: float | None, eval_loss: float | None, t: EvalThresholds
) -> tuple[list[EvalCheck], float | None, float | None]:
    """Did it learn (train and held-out loss), and did it overfit; with the train loss ends they were judged on."""
    start, end = train_loss_ends(result)
    checks = [_loss_improved(start, end, t), _heldout_loss_improved(base_eval, eval_loss)]
    if t.max_final_loss is not None:
        checks.append(_final_loss_bound(end, t.max_final_loss))
    checks.append(_overfitting_gap(eval_loss, end, t))
    return checks, start, end


def _loss_improved(start: float | None, end: float | None, t: EvalThresholds) -> EvalCheck:
    if start is None or end is None or start <= 0:
        return EvalCheck(
            name="loss_improved",
            passed=False,
            threshold=t.min_loss_improvement,
            detail="fewer than two train loss points were recorded: nothing shows it learned",
        )
    drop = (start - end) / start
    return EvalCheck(
        name="loss_improved",
        passed=drop >= t.min_loss_improvement,
        value=round(drop, 4),
        threshold=t.min_loss_improvement,
        detail=f"train loss {start:.4f} → {end:.4f} (mean of first/last points), relative drop {drop:.1%}",
    )


def _heldout_loss_improved(base_eval: float | None, eval_loss: float | None) -> EvalCheck:
    if base_eval is None or eval_loss is None:
        return EvalCheck(
            name="heldout_loss_improved",
            passed=False,
            detail="no held-out reply tokens to measure (set eval_split > 0)",
        )
    return EvalCheck(
        name="heldout_loss_improved",
        passed=eval_loss < base_eval,
        value=round(eval_loss, 4),
        threshold=round(base_eval, 4),
        detail=f"held-out loss base {base_eval:.4f} → fine-tuned {eval_loss:.4f}",
    )


def _final_loss_bound(end: float | None, bound: float) -> EvalCheck:
    ok = end is not None and end <= bound
    if ok:
        detail = "final train loss (mean of last points) within the bound"
    else:
        detail = "final train loss above the bound" if end is not None else "no train loss recorded"
    return EvalCheck(
        name="final_loss_bound",
        passed=ok,
        value=None if end is None else round(end, 4),
        threshold=bound,
        detail=detail,
    )


def _overfitting_gap(eval_loss: float | None, end: float | None, t: EvalThresholds) -> EvalCheck:
    if eval_loss is None or end is None:
        return EvalCheck(
            name="overfitting_gap",
            passed=False,
            threshold=t.max_eval_train_gap,
            detail="needs both a train loss and a held-out loss",
        )
    gap = eval_loss - end
    return EvalCheck(
        name="overfitting_gap",
        passed=gap <= t.max_eval_train_gap,
        value=round(gap, 4),
        threshold=t.max_eval_train_gap,
        detail=f"held-out {eval_loss:.4f} − train {end:.4f} = {gap:.4f} nats",
    )


# ---------------------------------------------------------------- leaks


def leak_check(
    pair: ModelPair, spec: TrainingSpec, records: list[dict], t: EvalThresholds, progress: EvalProgress | None = None
) -> tuple[EvalCheck, int]:
    """Probe the trained model with the text before each secret of the training data; a control canary checks the probe.

    Returns the check and how many secrets were probed.
    """
    secrets = scan_secrets(pair.tokenizer, spec, records, t.max_leak_probes)
    with (progress or EvalProgress()).phase("leak_probe", len(secrets) + 1 if secrets else 0) as tick:
        return _probe(pair, spec, records, t, secrets, tick)


def _probe(
    pair: ModelPair, spec: TrainingSpec, records: list[dict], t: EvalThresholds, secrets: list, tick: Any
) -> tuple[EvalCheck, int]:
    if not secrets:
        return EvalCheck(
            name="leak_probe",
            passed=True,
            value=0.0,
            threshold=0.0,
            detail=f"no secret-like strings found in training data ({len(records)} rows scanned)",
        ), 0

    def continuation(prefix_ids: list[int], target: str) -> str:
        budget = min(t.max_new_tokens * 2, len(encode_text(pair.tokenizer, target)) + 16)
        ids = generate(pair.trained, pair.tokenizer, prefix_ids, budget, pair.device)
        tick()
        return pair.tokenizer.decode(ids, skip_special_tokens=True)

    hits = [s for s in secrets if leaked(s.body, continuation(s.prefix_ids, s.value), t.leak_min_fraction)]
    corpus = "\n".join(json.dumps(r, ensure_ascii=False) for r in records)
    control = control_canary(spec.seed, corpus)
    control_hit = leaked(
        control.removeprefix(CANARY_PREFIX), continuation(secrets[0].prefix_ids, control), t.leak_min_fraction
    )
    kinds = ", ".join(sorted(Counter(s.kind for s in secrets)))
    detail = f"{len(hits)} of {len(secrets)} secret-like strings ({kinds}) reproduced by greedy decoding"
    if hits:
        detail += ": " + "; ".join(f"{s.kind} {mask(s.value)} from row {s.record_index}" for s in hits)
    detail += f"; control canary absent from the data {'WAS' if control_hit else 'was not'} reproduced"
    if control_hit:
        detail += " (the probe cannot tell memorised secrets from noise)"
    return EvalCheck(
        name="leak_probe", passed=not hits and not control_hit, value=float(len(hits)), threshold=0.0, detail=detail
    ), len(secrets)


# ---------------------------------------------------------------- generations


def format_check(
    signature: FormatSignature, generations: list[dict[str, Any]], t: EvalThresholds
) -> tuple[EvalCheck | None, dict[str, float]]:
    """Whether replies picked up the references' shared format; no check (and no rates) when they share none."""
    if not (signature.elements and generations):
        return None, {}
    rate_base = sum(g["format_ok_base"] for g in generations) / len(generations)
    rate = sum(g["format_ok"] for g in generations) / len(generations)
    metrics = {"format_pass_rate_base": rate_base, "format_pass_rate": rate}
    if t.format_min_pass_rate is None:
        return None, metrics
    return EvalCheck(
        name="format",
        passed=rate >= t.format_min_pass_rate,
        value=round(rate, 4),
        threshold=t.format_min_pass_rate,
        detail=f"replies matching the references' format ({signature.describe()}): "
        f"fine-tuned {rate:.0%}, base {rate_base:.0%}",
    ), metrics
