"""What a person reads in the chat: tool results and the notes beside the cards (agent.ui.cards), as Markdown.

Pure text from typed records (``agent.results``, ``ApprovalRequest``, ``JobState``); no Chainlit here.
Dollars go through ``tools.core.money.usd``, as everywhere a person reads them.
"""

from __future__ import annotations

import re
from typing import Any

from agent.results import (
    ApprovalResult,
    AttemptFacts,
    EstimateFacts,
    EstimateResult,
    EvalsResult,
    PreflightFacts,
    RemediateResult,
    RenderResult,
    ResultStatus,
    RunResult,
    ToolResult,
)
from tools.core.money import DASH, usd
from tools.core.spec import EvalCheck
from tools.core.status import CheckStatus
from tools.job.state import JobState

_DIRECTIVE = re.compile(r":(?=[A-Za-z])")


def md_safe(text: str) -> str:
    """Escape ``:word`` outside code: Chainlit's Markdown reads it as a directive and drops it ("person:chainlit")."""
    lines, fenced = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced:
            parts = line.split("`")
            line = "`".join(part if i % 2 else _DIRECTIVE.sub(r"\\:", part) for i, part in enumerate(parts))
        lines.append(line)
    return "\n".join(lines)


def num(value: Any, fmt: str = ".4f") -> str:
    return format(value, fmt) if isinstance(value, int | float) else DASH


def estimate_table(e: EstimateFacts) -> str:
    """The estimate against the budget limits, as the person will judge it."""
    fits = "fits" if e.fits else "**does not fit**"
    gpus = f"{e.num_gpus}× " if e.num_gpus > 1 else ""
    rows = [
        "| | Estimate | Limit |",
        "|---|---|---|",
        f"| Cost | **{usd(e.estimated_cost_usd)}** | soft {usd(e.soft_threshold_usd)} · "
        f"hard {usd(e.max_budget_usd)} (spent {usd(e.spent_usd)}) |",
        f"| Time | {e.estimated_duration_min:.1f} min | |",
        f"| GPU memory | {e.estimated_vram_gb:.2f} GB | {gpus}{e.gpu} {e.gpu_memory_gb:.0f} GB: {fits} |",
        f"| Steps | {e.total_steps} | |",
        f"| Data | {e.dataset_rows} rows, {e.dataset_tokens} tokens | |",
        f"| Trainable parameters | {e.trainable_params:,} of {e.total_params:,} | |",
    ]
    notes = "".join(f"\n- {note}" for note in e.notes)
    return "\n".join(rows) + notes + preflight_text(e.preflight)


def preflight_text(preflight: PreflightFacts | None) -> str:
    """The free checks run before any money is asked for, one line each."""
    if preflight is None:
        return ""
    head = "passed" if preflight.passed else "**failed**: nothing will be asked for or spent"
    lines = "".join(
        f"\n- {c.name}: {'**FAIL** ' if c.status == CheckStatus.FAIL else f'{c.status} '}— {c.detail}"
        for c in preflight.checks
    )
    return f"\n\n**Pre-flight** {head}{lines}"


def checks_table(checks: list[EvalCheck]) -> str:
    rows = ["| Check | Result | Value | Threshold | Detail |", "|---|---|---|---|---|"]
    for c in checks:
        mark = "pass" if c.passed else "**FAIL**"
        value = "" if c.value is None else c.value
        threshold = "" if c.threshold is None else c.threshold
        rows.append(f"| {c.name} | {mark} | {value} | {threshold} | {c.detail.replace('|', '/')} |")
    return "\n".join(rows)


def attempt_table(a: AttemptFacts) -> str:
    return (
        "| Metric | Value |\n|---|---|\n"
        f"| Train loss | {num(a.initial_train_loss)} → {num(a.final_train_loss)} |\n"
        f"| Eval loss | {num(a.initial_eval_loss)} → {num(a.final_eval_loss)} |\n"
        f"| Steps | {a.steps} in {a.duration_s:.0f} s |\n"
        f"| Throughput | {a.tokens_per_s:.0f} tokens/s |\n"
        f"| Peak memory | {a.peak_memory_mb:.0f} MB |\n"
        f"| Actual cost | {usd(a.actual_cost_usd)} (spent {usd(a.spent_usd)}) |"
    )


def _body(r: ToolResult) -> str:
    """What a result holds beyond its status line."""
    if isinstance(r, EstimateResult) and r.estimate is not None:
        if r.status == ResultStatus.PREFLIGHT_FAILED:
            return preflight_text(r.estimate.preflight).lstrip("\n")
        return estimate_table(r.estimate)
    if isinstance(r, RunResult) and r.attempt is not None:
        if not r.ok:
            return f"{r.attempt.failure_class}: {r.attempt.error or 'no error text'}"
        repriced = f"\n\n{r.message}\n\n{estimate_table(r.estimate)}" if r.estimate is not None else ""
        return attempt_table(r.attempt) + repriced
    if isinstance(r, EvalsResult) and r.evals is not None:
        return checks_table(r.evals.checks)
    if isinstance(r, RenderResult) and r.script_path is not None:
        return f"- script: `{r.script_path}`\n- config: `{r.config_path}`"
    if isinstance(r, RemediateResult) and r.remediation is not None:
        h = r.remediation
        changes = ", ".join(f"{field} {old} → {new}" for field, (old, new) in h.changes.items()) or "no field changed"
        table = f"\n\n{estimate_table(r.estimate)}" if r.estimate is not None else ""
        return f"Retry {h.retry_count}/{h.max_retries} by rule `{h.rule}` ({changes}): {h.explanation}{table}"
    if isinstance(r, ApprovalResult):
        decided = f"decided by `{r.decided_by}`" if r.decided_by else ""
        table = estimate_table(r.estimate) if r.estimate is not None else ""
        return "\n\n".join(part for part in (decided, table) if part)
    return ""


def format_tool_result(r: ToolResult) -> str:
    """A tool's typed result as something a person reads: tables for the estimate, the run and the checks."""
    head = f"**{r.status}**" + (f": {r.message}" if r.message and r.message != r.status else "")
    if not r.ok and r.status in (ResultStatus.REFUSED, ResultStatus.ERROR):
        return head
    body = _body(r)
    return f"{head}\n\n{body}" if body else head


def is_error(r: ToolResult) -> bool:
    return not r.ok and r.status in (ResultStatus.REFUSED, ResultStatus.ERROR, ResultStatus.FAILED)


def lineage_note(job: JobState | None) -> str:
    """What the approval is for beyond the spec: a continue of a run that stopped, or a run built on another's."""
    if job is None:
        return ""
    if job.warm_start is not None:
        w = job.warm_start
        return f"Starts from run `{w.run_id}`'s trained {'LoRA adapter' if w.kind == 'adapter' else 'full weights'}."
    point = job.resume
    if point is not None and job.continued and job.continued[-1] == point:
        return (
            f"**Continue** of run `{job.run_id}` from its checkpoint at step {point.step} (attempt "
            f"{point.from_attempt}): priced for the steps left. Auto-approval is off for a continue, and **Cancel** "
            "here ends the run for good (a cancelled run is not continued)."
        )
    return ""
