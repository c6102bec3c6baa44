"""The evaluation part of REPORT.md, prepared as plain rows: task score, degenerate replies, forgetting, checks.

Warnings (severity "warning") are shown as warnings, never as failures: only gate checks decide the verdict.
"""

from __future__ import annotations

from typing import Any

from tools.core.money import DASH
from tools.core.spec import EvalCheck, EvalResult


def pct(value: float | None) -> str:
    return DASH if value is None else f"{value:.0%}"


def score(value: float | None) -> str:
    return DASH if value is None else f"{value:.3f}"


def check_result(check: EvalCheck) -> str:
    if check.passed:
        return "pass"
    return "warning" if check.severity == "warning" else "**FAIL**"


def verdict_line(result: EvalResult) -> str:
    """'PASSED (6/6 gate checks passed; 1 warning)': what decided, and what only warns."""
    gates = [c for c in result.checks if c.severity == "gate"]
    warned = [c for c in result.checks if c.severity == "warning" and not c.passed]
    line = (
        f"**{'PASSED' if result.passed else 'FAILED'}** ({sum(c.passed for c in gates)}/{len(gates)} gate checks passed"
    )
    if warned:
        line += f"; {len(warned)} warning{'s' if len(warned) > 1 else ''}: {', '.join(c.name for c in warned)}"
    return line + ")"


def task_rows(metrics: dict[str, float | None]) -> list[tuple[str, str, str]]:
    """Before → after rows of the task score, degenerate replies and the forgetting check (when measured)."""
    m = metrics
    rows = []
    if m.get("task_rouge_l") is not None:
        rows += [
            ("Task score: ROUGE-L F1 vs reference", score(m.get("task_rouge_l_base")), score(m.get("task_rouge_l"))),
            ("Task score: contains the reference", pct(m.get("task_contains_base")), pct(m.get("task_contains"))),
            ("Task score: exact match", pct(m.get("task_exact_base")), pct(m.get("task_exact"))),
        ]
    if m.get("degenerate_share") is not None:
        rows.append(("Degenerate replies", pct(m.get("degenerate_share_base")), pct(m.get("degenerate_share"))))
    if m.get("forgetting_score") is not None:
        rows.append(
            (
                "General questions (forgetting check)",
                pct(m.get("forgetting_score_base")),
                pct(m.get("forgetting_score")),
            )
        )
    return rows


def summary_rows(result: EvalResult | None) -> list[tuple[str, str]]:
    """The executive summary's lines on what the model says: task score and the forgetting check."""
    if result is None:
        return []
    m = result.metrics
    rows = []
    if m.get("task_rouge_l") is not None:
        rows.append(
            (
                "Task score (ROUGE-L, base → fine-tuned)",
                f"{score(m.get('task_rouge_l_base'))} → {score(m['task_rouge_l'])}",
            )
        )
    forgetting = next((c for c in result.checks if c.name == "forgetting"), None)
    if forgetting is not None and m.get("forgetting_score") is not None:
        words = f"{pct(m.get('forgetting_score_base'))} → {pct(m['forgetting_score'])}"
        rows.append(("Forgetting check (general questions)", words + ("" if forgetting.passed else " (warning)")))
    return rows


def _mark(scores: dict[str, Any] | None, degenerate: str | None) -> str:
    parts = []
    if scores:
        parts.append(f"ROUGE-L {scores['rouge_l']:.2f}{' · contains ✓' if scores['contains'] else ''}")
    if degenerate:
        parts.append(f"degenerate: {degenerate}")
    return f" ({'; '.join(parts)})" if parts else ""


def generation_rows(generations: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Each held-out generation with its scores and degenerate reason beside each model's reply."""
    rows = []
    for g in generations:
        scores, degenerate = g.get("scores", {}), g.get("degenerate", {})
        row = {"prompt": g.get("prompt", ""), "reference": g.get("reference", "")}
        for key, fmt_key in (("base", "format_ok_base"), ("trained", "format_ok")):
            fmt = "" if fmt_key not in g else " (format ✓)" if g[fmt_key] else " (format ✗)"
            row[key] = f"{g.get(key, '')}{fmt}{_mark(scores.get(key), degenerate.get(key))}"
        custom = g.get("custom") or {}
        row["custom"] = ", ".join(f"{k} {'✓' if v else '✗' if v is False else DASH}" for k, v in custom.items())
        rows.append(row)
    return rows


def general_rows(general: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The forgetting set as answered: each model's reply with its score (✓ right and in plain form)."""
    rows = []
    for g in general:
        row = {"prompt": g["prompt"], "reference": g["reference"]}
        for key in ("base", "trained"):
            s = g["scores"].get(key, {})
            note = "✓" if s.get("score") else "✗ in the task's format" if s.get("task_format") else "✗"
            row[key] = f"{g.get(key, '')} ({note})"
        rows.append(row)
    return rows
