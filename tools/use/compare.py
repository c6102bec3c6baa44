"""Two runs side by side: their specs (what differs first), their metrics, and their answers to the same prompts.

The answers are the generations each run's evals recorded; prompts both runs answered are paired, the others
follow. Fresh answers to a prompt of the person's own come from ``tools.use.generate``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.core.money import DASH, usd
from tools.use.runs import RunRecord, RunSummary

MAX_PAIRS = 5


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    a: str
    b: str
    differs: bool = False


class GenerationPair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str
    reference: str | None = None
    a: str | None = None
    b: str | None = None


class Comparison(BaseModel):
    """What `aegis runs compare A B` shows."""

    model_config = ConfigDict(extra="forbid")

    a: RunSummary
    b: RunSummary
    spec: list[Row] = Field(default_factory=list)
    metrics: list[Row] = Field(default_factory=list)
    generations: list[GenerationPair] = Field(default_factory=list)


def _text(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _num(value: float | None, digits: int = 4) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def spec_rows(a: RunRecord, b: RunRecord) -> list[Row]:
    """Every spec field of either run; the ones that differ first."""
    da = a.spec.model_dump(mode="json") if a.spec else {}
    db = b.spec.model_dump(mode="json") if b.spec else {}
    rows = [Row(name=k, a=_text(da.get(k)), b=_text(db.get(k)), differs=da.get(k) != db.get(k)) for k in {**da, **db}]
    return sorted(rows, key=lambda r: not r.differs)


def _metric(record: RunRecord, key: str) -> float | None:
    job = record.job
    if job is None or job.eval_result is None:
        return None
    value = job.eval_result.metrics.get(key)
    return float(value) if isinstance(value, int | float) else None


def _attempt(record: RunRecord) -> Any:
    return record.job.attempts[-1] if record.job is not None and record.job.attempts else None


def _attempts(s: RunSummary) -> str:
    steps = ", ".join(map(str, s.continued_from_steps))
    return f"{s.attempts}" + (f" (continued from step {steps})" if steps else "")


def metric_rows(a: RunRecord, b: RunRecord) -> list[Row]:
    sa, sb = a.summary(), b.summary()
    aa, ab = _attempt(a), _attempt(b)

    def row(name: str, va: str, vb: str) -> Row:
        return Row(name=name, a=va, b=vb, differs=va != vb)

    def loss_pair(s: RunSummary) -> str:
        return f"{_num(s.loss_before)} → {_num(s.loss_after)}"

    def attempt_value(attempt: Any, field: str, digits: int = 4) -> str:
        return _num(getattr(attempt, field), digits) if attempt is not None else DASH

    rows = [
        row("outcome", sa.outcome, sb.outcome),
        row("started from run", sa.parent_run or DASH, sb.parent_run or DASH),
        row("attempts (continued from step)", _attempts(sa), _attempts(sb)),
        row("held-out loss (base → tuned)", loss_pair(sa), loss_pair(sb)),
        row("perplexity (tuned)", _num(_metric(a, "perplexity"), 2), _num(_metric(b, "perplexity"), 2)),
        row(
            "train loss (first → last)",
            *(f"{attempt_value(x, 'initial_train_loss')} → {attempt_value(x, 'final_train_loss')}" for x in (aa, ab)),
        ),
        row(
            "format pass rate (tuned)", _num(_metric(a, "format_pass_rate"), 2), _num(_metric(b, "format_pass_rate"), 2)
        ),
        row("steps", *(str(x.steps_completed) if x is not None else DASH for x in (aa, ab))),
        row("tokens/s", attempt_value(aa, "tokens_per_s", 0), attempt_value(ab, "tokens_per_s", 0)),
        row("cost", usd(sa.cost_usd), usd(sb.cost_usd)),
        row("training time", f"{sa.train_seconds:.0f} s", f"{sb.train_seconds:.0f} s"),
        row("eval time", *(DASH if s.eval_seconds is None else f"{s.eval_seconds:.0f} s" for s in (sa, sb))),
        row("data", f"{sa.data} ({_text(sa.data_rows)} rows)", f"{sb.data} ({_text(sb.data_rows)} rows)"),
        row("data digest", _text(sa.data_digest)[:16], _text(sb.data_digest)[:16]),
    ]
    return rows


def _generations(record: RunRecord) -> list[dict[str, Any]]:
    job = record.job
    return list(job.eval_result.generations) if job is not None and job.eval_result is not None else []


def generation_pairs(a: RunRecord, b: RunRecord, limit: int = MAX_PAIRS) -> list[GenerationPair]:
    """The tuned answers of both runs: to the prompts both were asked first, then each one's own."""
    ga = {str(g.get("prompt")): g for g in _generations(a)}
    gb = {str(g.get("prompt")): g for g in _generations(b)}
    shared = [p for p in ga if p in gb]
    pairs = [
        GenerationPair(prompt=p, reference=ga[p].get("reference"), a=ga[p].get("trained"), b=gb[p].get("trained"))
        for p in shared
    ]
    for prompts, gens, side in ((ga, ga, "a"), (gb, gb, "b")):
        for p in prompts:
            if p not in shared and len(pairs) < limit:
                pairs.append(
                    GenerationPair(prompt=p, reference=gens[p].get("reference"), **{side: gens[p].get("trained")})
                )
    return pairs[:limit]


def compare_runs(a: RunRecord, b: RunRecord) -> Comparison:
    return Comparison(
        a=a.summary(),
        b=b.summary(),
        spec=spec_rows(a, b),
        metrics=metric_rows(a, b),
        generations=generation_pairs(a, b),
    )
