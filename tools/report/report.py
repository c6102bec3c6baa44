"""The audit report of one run: what was asked, what it was estimated to cost, who approved it, what it really cost,
what the evals found and every event on the way, as REPORT.md plus a loss-curve PNG in the run's folder.

The numbers are prepared here in plain Python; the Jinja2 template only lays them out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from tools.core.money import DASH, usd
from tools.core.paths import TEMPLATES_DIR
from tools.core.runlog import RunFolder
from tools.core.spec import BudgetPolicy, CostEstimate, EvalResult, ExecutionResult, RunEvent, TrainingSpec
from tools.core.status import JobStatus
from tools.plan.checkpoints import ResumePoint
from tools.plan.preflight import PreflightReport
from tools.plan.remediation import Remediation
from tools.report.eval_report import check_result, general_rows, generation_rows, summary_rows, task_rows, verdict_line

TEMPLATE = "report.md.j2"
MAX_CELL = 400
MAX_ERROR = 2000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def md_cell(value: Any, limit: int = MAX_CELL) -> str:
    """Make any text safe inside one Markdown table cell: no pipes, no line breaks, no raw HTML, bounded length."""
    text = DASH if value is None or value == "" else str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)
    return text.replace("\n", "<br>")


def code_block(text: str, limit: int = MAX_ERROR) -> str:
    """Text for a fenced block: bounded, and unable to close the fence early."""
    text = text if len(text) <= limit else text[:limit] + "\n…"
    return text.replace("```", "'''")


def num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:.{digits}f}"


def minutes(seconds: float | None) -> str:
    return DASH if seconds is None else f"{seconds / 60:.1f} min"


def _eval_losses(eval_result: EvalResult | None, attempts: list[ExecutionResult]) -> tuple[float | None, float | None]:
    """Before → after held-out loss: measured by the evals when they ran, else what the training log recorded."""
    if eval_result and eval_result.metrics.get("eval_loss") is not None:
        return eval_result.metrics.get("base_eval_loss"), eval_result.metrics.get("eval_loss")
    last = attempts[-1] if attempts else None
    return (last.initial_eval_loss, last.final_eval_loss) if last else (None, None)


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 60 else minutes(value)


def _resume_rows(
    attempts: list[ExecutionResult], remediations: list[Remediation], continued: Sequence[ResumePoint] = ()
) -> list[dict[str, str]]:
    """Per attempt: steps trained in it, steps taken from a checkpoint, and what resuming saved against a restart
    (a retry's resume, or a person's continue from that step)."""
    resumes = {item.attempt: item.resume.model_dump() for item in remediations if item.resume}
    rows = []
    for i, a in enumerate(attempts, start=1):
        by_continue = next((c.model_dump() for c in continued if c.step == a.resumed_from_step), {})
        resume = resumes.get(i - 1) or by_continue
        rows.append(
            {
                "n": str(i),
                "trained": str(max(a.steps_completed - a.resumed_from_step, 0)),
                "resumed": (
                    f"{a.resumed_from_step} (checkpoint of attempt {resume.get('from_attempt', '?')})"
                    if a.resumed_from_step
                    else "0 (from the start)"
                ),
                "saved": (
                    f"{usd(resume.get('saved_usd', 0.0))}, {_seconds(resume.get('saved_seconds', 0.0))}"
                    if a.resumed_from_step
                    else DASH
                ),
            }
        )
    return rows


def _device_line(spec: TrainingSpec, attempts: list[ExecutionResult]) -> str:
    """The device that trained, as the last attempt reports it; the spec's target when nothing ran."""
    if not attempts:
        return f"{spec.num_gpus}× {spec.target_gpu} (not run)"
    last = attempts[-1]
    return f"{last.num_gpus}× {last.gpu} ({last.executor})"


def _isolation_line(estimate: CostEstimate | None, attempts: list[ExecutionResult]) -> str:
    """What contained the run, and the model's own code it executed (named with its digests)."""
    ran = next((a.isolation for a in reversed(attempts) if a.isolation is not None), None)
    place = estimate.placement if estimate is not None else None
    shown = place.isolation.describe() if place is not None and place.isolation else DASH
    line = f"isolation: {ran}" if ran is not None else shown
    if place is not None and place.trust_remote_code:
        line += f"; the model's own code ran: {place.code_files()}"
    return line


def _attempt_rows(attempts: list[ExecutionResult]) -> list[dict[str, str]]:
    return [
        {
            "n": str(i),
            "status": a.status + (f" ({a.failure_class})" if a.failure_class else ""),
            "where": f"{a.executor} · {a.num_gpus}× {a.gpu}",
            "duration": minutes(a.duration_s),
            "cost": usd(a.actual_cost_usd),
            "peak": f"{a.peak_memory_gb:.2f} GB" if a.peak_memory_mb else DASH,
            "tps": f"{a.tokens_per_s:,.0f}" if a.tokens_per_s else DASH,
            "steps": f"{a.steps_completed}/{a.total_steps}",
            "loss": num(a.final_train_loss),
        }
        for i, a in enumerate(attempts, start=1)
    ]


def _estimated_vs_actual(
    estimate: CostEstimate | None, attempts: list[ExecutionResult], spec: TrainingSpec
) -> list[tuple[str, str, str]]:
    peak = max((a.peak_memory_gb for a in attempts), default=0.0)
    tps = [a.tokens_per_s for a in attempts if a.tokens_per_s]
    est_tps = None
    if estimate and estimate.cost_breakdown.estimated_seconds > 0:
        b = estimate.cost_breakdown
        est_tps = b.train_tokens_per_epoch * spec.num_epochs / b.estimated_seconds
    return [
        (
            "Cost (all attempts)",
            usd(estimate.estimated_cost_usd) if estimate else DASH,
            usd(sum(a.actual_cost_usd for a in attempts)),
        ),
        (
            "Time (all attempts)",
            f"{estimate.estimated_duration_min:.1f} min" if estimate else DASH,
            minutes(sum(a.duration_s for a in attempts)),
        ),
        (
            "Peak memory",
            f"{estimate.estimated_vram_gb:.2f} GB (VRAM estimate)" if estimate else DASH,
            f"{peak:.2f} GB" if peak else DASH,
        ),
        (
            "Throughput",
            f"{est_tps:,.0f} tokens/s" if est_tps else DASH,
            f"{tps[-1]:,.0f} tokens/s (last attempt)" if tps else DASH,
        ),
    ]


def _remediation_rows(remediations: list[Remediation]) -> list[dict[str, Any]]:
    return [
        {
            "attempt": item.attempt,
            "rule": item.rule or DASH,
            "explanation": item.explanation,
            "changes": [(key, str(pair[0]), str(pair[1])) for key, pair in item.changes.items()],
        }
        for item in remediations
    ]


def _comparison(metrics: dict[str, float | None]) -> list[tuple[str, str, str]]:
    rows = [
        ("Held-out loss", num(metrics.get("base_eval_loss")), num(metrics.get("eval_loss"))),
        ("Perplexity", num(metrics.get("base_perplexity"), 2), num(metrics.get("perplexity"), 2)),
    ]
    if metrics.get("format_signature_elements") == 0:
        rows.append(("Format pass rate", "not applicable: the references share no structure", DASH))
    elif metrics.get("format_pass_rate") is not None:
        rows.append(
            ("Format pass rate", f"{metrics['format_pass_rate_base']:.0%}", f"{metrics['format_pass_rate']:.0%}")
        )
    if metrics.get("repetition") is not None:
        rows.append(
            ("Repeated n-gram share", num(metrics.get("repetition_base"), 2), num(metrics.get("repetition"), 2))
        )
    return rows + task_rows(metrics)


def _summary(
    spec: TrainingSpec,
    estimate: CostEstimate | None,
    gate: dict,
    attempts: list[ExecutionResult],
    eval_result: EvalResult | None,
    outcome: str,
) -> list[tuple[str, str]]:
    before, after = _eval_losses(eval_result, attempts)
    finished = [a for a in attempts if a.final_train_loss is not None]
    statuses = ", ".join(a.status for a in attempts)
    evals = DASH
    if eval_result:
        gates = [c for c in eval_result.checks if c.severity == "gate"]
        warned = sum(not c.passed for c in eval_result.checks if c.severity == "warning")
        evals = f"{'passed' if eval_result.passed else 'failed'} ({sum(c.passed for c in gates)}/{len(gates)} checks"
        evals += f"; {warned} warning{'s' if warned > 1 else ''})" if warned else ")"
    decided = gate.get("decision") or gate.get("outcome") or DASH
    return [
        ("Outcome", outcome_words(outcome)),
        ("Model", spec.model_name),
        ("Method", spec.method),
        ("GPU", _device_line(spec, attempts)),
        ("Isolation", _isolation_line(estimate, attempts)),
        ("Attempts", f"{len(attempts)} ({statuses})" if attempts else "0"),
        ("Final train loss", num(finished[-1].final_train_loss) if finished else DASH),
        ("Eval loss (before → after)", f"{num(before)} → {num(after)}"),
        (
            "Estimated vs actual cost",
            f"{usd(estimate.estimated_cost_usd) if estimate else DASH} vs {usd(sum(a.actual_cost_usd for a in attempts))}",
        ),
        (
            "Estimated vs actual time",
            f"{f'{estimate.estimated_duration_min:.1f} min' if estimate else DASH} vs "
            f"{minutes(sum(a.duration_s for a in attempts))}",
        ),
        ("Gate decision", f"{decided} by {gate.get('decided_by') or DASH}"),
        ("Evaluation", evals),
        *summary_rows(eval_result),
        ("Evaluation time", _eval_time(eval_result)),
    ]


def _eval_time(eval_result: EvalResult | None) -> str:
    seconds = eval_result.metrics.get("eval_seconds") if eval_result else None
    return DASH if not isinstance(seconds, int | float) else minutes(float(seconds))


def outcome_words(outcome: str) -> str:
    """The outcome as a person reads it: evals_failed says the model was trained and kept."""
    if outcome == JobStatus.EVALS_FAILED:
        return "evals_failed: trained (the model is kept), but the evals failed"
    return outcome


def plot_loss_curve(attempts: list[ExecutionResult], path: Path) -> Path | None:
    """Train loss per step for every attempt, with its held-out loss before and after; None when nothing was logged."""
    if not any(a.loss_curve for a in attempts):
        return None
    from matplotlib.figure import Figure  # the object API: no pyplot global state, no display needed (Agg)

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    for i, a in enumerate(attempts, start=1):
        if not a.loss_curve:
            continue
        steps, losses = zip(*sorted(a.loss_curve), strict=True)
        line = ax.plot(steps, losses, label=f"attempt {i} train ({a.status})", linewidth=1.2)[0]
        evals = [(0, a.initial_eval_loss), (steps[-1], a.final_eval_loss)]
        points = [(s, v) for s, v in evals if v is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, "o", color=line.get_color(), alpha=0.8, label=f"attempt {i} held-out")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats)")
    ax.set_title("Training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    return path


def render_report(context: dict[str, Any]) -> str:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=False,  # Markdown, not HTML: cells are escaped by md_cell instead
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(cell=md_cell, code=code_block, usd=usd, num=num, thousands=lambda n: f"{n:,}")
    return env.get_template(TEMPLATE).render(**context)


def write_report(
    run: RunFolder,
    *,
    spec: TrainingSpec,
    policy: BudgetPolicy,
    estimate: CostEstimate | None,
    gate: dict,
    attempts: list[ExecutionResult],
    remediations: list[Remediation],
    eval_result: EvalResult | None,
    events: list[RunEvent],
    outcome: str,
    preflight: PreflightReport | None = None,
    quote_hash: str | None = None,
    continued: Sequence[ResumePoint] = (),
    lineage: Sequence[str] = (),
) -> Path:
    """Write REPORT.md (and loss_curve.png) into the run's folder and return the report's path.

    remediations: one record per healing step (the failed attempt it followed, rule, explanation, changes).
    quote_hash: the quote of the last spec: the same hash its estimate and its approval showed.
    continued: where each `aegis continue` resumed; lineage: lines on the run's parent and continues.
    """
    curve = plot_loss_curve(attempts, run.loss_curve_path)
    context = {
        "run_id": run.run_id,
        "outcome": outcome,
        "summary": _summary(spec, estimate, gate, attempts, eval_result, outcome),
        "spec_json": spec.model_dump_json(indent=2),
        "spec_hash": spec.spec_hash(),
        "quote_hash": quote_hash,
        "policy": policy,
        "preflight": preflight,
        "estimate": estimate,
        "gate": {key: gate.get(key) for key in ("outcome", "reason", "decision", "decided_by", "approved_usd")},
        "comparison_rows": _estimated_vs_actual(estimate, attempts, spec),
        "attempts": attempts,
        "attempt_rows": _attempt_rows(attempts),
        "lineage": list(lineage),
        "resume_rows": _resume_rows(attempts, remediations, continued)
        if any(a.resumed_from_step for a in attempts)
        else [],
        "remediations": _remediation_rows(remediations),
        "loss_curve": curve.relative_to(run.root).as_posix() if curve else None,
        "eval": eval_result,
        "before_after": _comparison(eval_result.metrics) if eval_result else [],
        "eval_verdict": verdict_line(eval_result) if eval_result else "",
        "check_rows": [(c, check_result(c)) for c in eval_result.checks] if eval_result else [],
        "generation_rows": generation_rows(eval_result.generations) if eval_result else [],
        "general_rows": general_rows(eval_result.general) if eval_result else [],
        "events": [(e.timestamp.strftime("%Y-%m-%d %H:%M:%S UTC"), e.phase, e.status, e.message) for e in events],
    }
    run.report_path.write_text(render_report(context), encoding="utf-8")
    return run.report_path
