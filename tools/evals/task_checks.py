"""Checks on what the replies say: the task score against the references, degenerate replies, forgetting.

Pure functions of scored rows (tools.evals.scoring), so each is tested without a model. A fine-tuned model that
scores no better than its base on its own task fails; one that answers nothing fails; one that lost what it knew
outside the task is warned about (the operator chooses the threshold).
"""

from __future__ import annotations

from typing import Any

from tools.core.spec import EvalCheck
from tools.evals.formats import FormatSignature
from tools.evals.scoring import contains, degenerate_reason, mean, rouge_l, task_scores
from tools.evals.thresholds import EvalThresholds

MODELS = ("base", "trained")
TASK_KEYS = ("exact", "contains", "rouge_l")


def annotate(
    row: dict[str, Any], key: str, reply: str, ids: list[int], repetition: float, t: EvalThresholds, asked: str = ""
) -> None:
    """Mark one model's reply in its row: why it is degenerate (or None), and its scores against the reference.

    asked: the question without its chat template (the row's prompt when not given).
    """
    reason = degenerate_reason(reply, asked or row.get("prompt", ""), ids)
    if reason is None and repetition > t.max_repetition:
        reason = f"loops: {repetition:.0%} of its {t.repetition_ngram}-grams repeat"
    row.setdefault("degenerate", {})[key] = reason
    if str(row.get("reference") or "").strip():
        row.setdefault("scores", {})[key] = task_scores(reply, row["reference"])


def task_metrics(generations: list[dict[str, Any]]) -> dict[str, float | None]:
    """Mean exact / contains / ROUGE-L of both models over the scored rows; the share of degenerate replies."""
    scored = [g["scores"] for g in generations if "scores" in g]
    metrics: dict[str, float | None] = {}
    for key in TASK_KEYS:
        metrics[f"task_{key}_base"] = mean([s["base"][key] for s in scored])
        metrics[f"task_{key}"] = mean([s["trained"][key] for s in scored])
    flags = [g["degenerate"]["trained"] is not None for g in generations if "degenerate" in g]
    metrics["degenerate_share"] = mean([float(f) for f in flags])
    metrics["degenerate_share_base"] = mean(
        [float(g["degenerate"]["base"] is not None) for g in generations if "degenerate" in g]
    )
    metrics["task_scored_rows"] = float(len(scored))
    return metrics


def task_score_check(metrics: dict[str, float | None], t: EvalThresholds) -> EvalCheck | None:
    """Gate: the fine-tuned mean ROUGE-L must beat the base's by more than min_task_score_gain; None when off."""
    if t.min_task_score_gain is None:
        return None
    base, tuned = metrics.get("task_rouge_l_base"), metrics.get("task_rouge_l")
    if base is None or tuned is None:
        return EvalCheck(
            name="task_score",
            passed=False,
            threshold=t.min_task_score_gain,
            detail="no held-out row with a reference answer to score the replies against",
        )
    gain = tuned - base
    return EvalCheck(
        name="task_score",
        passed=gain > t.min_task_score_gain,
        value=round(gain, 4),
        threshold=t.min_task_score_gain,
        detail=f"ROUGE-L against the references over {metrics['task_scored_rows']:.0f} rows: base {base:.3f} → "
        f"fine-tuned {tuned:.3f}; contains {metrics['task_contains_base']:.0%} → {metrics['task_contains']:.0%}, "
        f"exact {metrics['task_exact_base']:.0%} → {metrics['task_exact']:.0%}",
    )


def degenerate_check(generations: list[dict[str, Any]], t: EvalThresholds) -> EvalCheck:
    """Gate: the share of fine-tuned replies that are degenerate (empty, marks, one token, the prompt, a loop)."""
    if not generations:
        return EvalCheck(
            name="degenerate_output",
            passed=False,
            threshold=t.max_degenerate_share,
            detail="no held-out prompts to generate from (set eval_split > 0)",
        )
    reasons = [g["degenerate"]["trained"] for g in generations]
    bad = [r for r in reasons if r is not None]
    share = len(bad) / len(reasons)
    base_bad = sum(g["degenerate"]["base"] is not None for g in generations)
    detail = f"{len(bad)} of {len(reasons)} fine-tuned replies degenerate (base: {base_bad})"
    if bad:
        detail += ": " + "; ".join(sorted(set(bad)))[:300]
    return EvalCheck(
        name="degenerate_output",
        passed=share <= t.max_degenerate_share,
        value=round(share, 4),
        threshold=t.max_degenerate_share,
        detail=detail,
    )


def general_score(reply: str, answers: list[str], signature: FormatSignature, prompt: str = "") -> dict[str, Any]:
    """A general-set reply's score: 1 when it holds an accepted answer, is no degenerate reply, and does not wear
    the training task's format (an answer in ticket format is the task leaking into everything), else 0."""
    held = any(contains(reply, a) for a in answers)
    in_task_format = bool(signature.elements) and signature.score(reply) >= 0.5
    degenerate = degenerate_reason(reply, prompt)
    return {
        "score": float(held and not in_task_format and degenerate is None),
        "contains": int(held),
        "task_format": in_task_format,
        "degenerate": degenerate,
    }


def forgetting_check(general: list[dict[str, Any]], t: EvalThresholds) -> tuple[EvalCheck, dict[str, float | None]]:
    """Warning: how much the general-set score fell from base to fine-tuned (a drop above max_forgetting_drop)."""
    base = mean([g["scores"]["base"]["score"] for g in general])
    tuned = mean([g["scores"]["trained"]["score"] for g in general])
    metrics: dict[str, float | None] = {"forgetting_score_base": base, "forgetting_score": tuned}
    metrics["forgetting_drop"] = None if base is None or tuned is None else base - tuned
    metrics["forgetting_rouge_l_base"] = mean([g["scores"]["base"]["rouge_l"] for g in general])
    metrics["forgetting_rouge_l"] = mean([g["scores"]["trained"]["rouge_l"] for g in general])
    drop = metrics["forgetting_drop"]
    if drop is None:
        check = EvalCheck(
            name="forgetting",
            passed=False,
            severity="warning",
            threshold=t.max_forgetting_drop,
            detail="the general set has no rows: nothing shows what the model still knows",
        )
        return check, metrics
    formatted = sum(g["scores"]["trained"]["task_format"] for g in general)
    detail = f"general questions answered well: base {base:.0%} → fine-tuned {tuned:.0%} (drop {drop:.0%})"
    if formatted:
        detail += f"; {formatted} of {len(general)} fine-tuned answers came in the training task's format"
    check = EvalCheck(
        name="forgetting",
        passed=drop <= t.max_forgetting_drop,
        severity="warning",
        value=round(drop, 4),
        threshold=t.max_forgetting_drop,
        detail=detail,
    )
    return check, metrics


def general_row(prompt: str, reference: str, answers: list[str]) -> dict[str, Any]:
    """A general-set row before it is answered; rouge_l is added to each model's scores when it is."""
    return {"prompt": prompt, "reference": reference, "answers": answers, "scores": {}}


def score_general(row: dict[str, Any], key: str, reply: str, signature: FormatSignature) -> None:
    row[key] = reply
    scores = general_score(reply, row["answers"], signature, row["prompt"])
    row["scores"][key] = scores | {"rouge_l": rouge_l(reply, row["reference"])}
