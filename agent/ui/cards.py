"""The chat's cards as text: the approval card (the spec once, money that adds up) and the result card of a run.

Pure Markdown from typed records; the views attach the collapsible parts (the full spec, the full report) as
closed Details elements under them, so the page shows one compact card and the rest one click away.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agent.ui.presenters import md_safe, num
from tools.core.money import HOLD_MARGIN_S, usd
from tools.core.spec import TrainingSpec
from tools.core.status import JobStatus
from tools.job.healing import eval_failure
from tools.job.state import JobState
from tools.report.approval import ApprovalRequest, sources_line

SPEC_SUMMARY = "The spec in full: every field, where each came from, every priced attempt"
REPORT_SUMMARY = "The full report (REPORT.md)"
ASKED_SHOWN = 300
_SPEC_BLOCK = re.compile(r"```json\n(?P<json>.*?)\n```", re.S)
_SPEC_HEAD = re.compile(r"as this training spec \((run [^)]*)\):")
_SOURCE_LINES = ("**From you:**", "**Defaults", "**Changed by Aegis")


def compact_spec_message(text: str) -> tuple[str, str | None]:
    """The intake's message without its spec JSON and field sources (they go in a closed block under it).

    The approval card names what matters; printing the whole spec here too is what made it appear three times.
    """
    match = _SPEC_BLOCK.search(text)
    if match is None:
        return text, None
    kept, moved = [], [match.group("json")]
    for line in (text[: match.start()] + text[match.end() :]).split("\n"):
        (moved if line.startswith(_SOURCE_LINES) else kept).append(line)
    head = "\n".join(line for line in kept if line.strip())
    head, found = _SPEC_HEAD.subn(r"as a training spec (\1); every field is in the closed block below.", head)
    return (head if found else f"{head}\n\nEvery field of the spec is in the closed block below."), "\n\n".join(moved)


def chose_line(spec: TrainingSpec, backend: str = "") -> str:
    """What Aegis chose, in the few fields that decide what runs and what it costs."""
    steps = f" · max {spec.max_steps} steps" if spec.max_steps else ""
    where = f" on {backend}" if backend else ""
    return (
        f"{spec.method} of `{spec.model_name}` on `{spec.dataset_path}` · {spec.num_epochs} epoch(s){steps} · "
        f"batch {spec.micro_batch_size}×{spec.gradient_accumulation_steps} · lr {spec.learning_rate} · "
        f"seq_len {spec.seq_len} · {spec.num_gpus}× {spec.target_gpu}{where}"
    )


def summed(parts: list[float], total: float) -> tuple[list[str], str]:
    """The parts and their total with as many decimals (from usd's 2 or 4, up to 6) as it takes for the shown parts
    to add up to the shown total, so a person adding the card's figures gets the card's total."""
    for places in range(2 if total >= 1 else 4, 7):
        if round(sum(round(p, places) for p in parts), places) == round(total, places):
            break
    return [f"${p:,.{places}f}" for p in parts], f"${total:,.{places}f}"


def worst_case_shown(req: ApprovalRequest) -> str:
    """The worst case as the card writes it (with the digits its attempts add up to), for the Approve button too."""
    if req.worst_case_usd is None:
        return usd(req.estimated_cost_usd)
    return (
        summed([a.estimated_cost_usd for a in req.attempts], req.worst_case_usd)[1]
        if req.attempts
        else usd(req.worst_case_usd)
    )


def _hourly(req: ApprovalRequest) -> float | None:
    """The price per hour the hold was computed at: the hold over the time limit plus its margin."""
    if req.timeout_s is None or req.max_attempt_cost_usd is None:
        return None
    return req.max_attempt_cost_usd / (req.timeout_s + HOLD_MARGIN_S) * 3600


def money_rows(req: ApprovalRequest) -> list[str]:
    """Every amount on the card, each saying what it is, so they add up: estimate, retries' sum, hold, limits."""
    rows = [
        "| Money | |",
        "|---|---|",
        f"| This run (estimate) | **{usd(req.estimated_cost_usd)}** · {req.estimated_duration_min:.1f} min "
        f"({'measured here' if req.time_source.startswith('measured') else 'modelled'}) |",
    ]
    if req.worst_case_usd is not None and req.attempts:
        shown, total = summed([a.estimated_cost_usd for a in req.attempts], req.worst_case_usd)
        parts = " + ".join(shown)
        allows = req.retries_budget_allows
        retries = f"{allows} retr{'y' if allows == 1 else 'ies'}" if allows is not None else "the retries"
        rows.append(
            f"| Worst case: every healing retry used ({len(req.attempts)} attempts) | {parts} = "
            f"**{total}** (the budget allows {retries}) |"
        )
    hourly = _hourly(req)
    if req.timeout_s is not None and req.max_attempt_cost_usd is not None and hourly is not None:
        why = (
            f"below the estimate: {req.backend or 'the backend'} prices its time at {usd(hourly)}/h"
            if req.max_attempt_cost_usd < req.estimated_cost_usd
            else "only the time used is billed"
        )
        rows.append(
            f"| Held while an attempt runs | {usd(req.max_attempt_cost_usd)}: its {req.timeout_s / 60:.0f}-min time "
            f"limit plus {HOLD_MARGIN_S:.0f} s at {usd(hourly)}/h; {why} |"
        )
    rows.append(
        f"| Limits | soft {usd(req.soft_threshold_usd)} · hard {usd(req.max_budget_usd)} (spent {usd(req.spent_usd)}) |"
    )
    return rows


def approval_card(req: ApprovalRequest, asked: str = "", note: str = "") -> str:
    """The approval, compact: why a person decides, what they asked, what Aegis chose, and the money."""
    fits = "fits" if req.fits else "**does not fit**"
    offered = f"{req.optimization.text()}\n\n" if req.optimization is not None else ""
    lead = f"{note}\n\n" if note else ""
    quoted = asked.strip().replace("\n", " ")
    quoted = quoted if len(quoted) <= ASKED_SHOWN else quoted[:ASKED_SHOWN] + "…"
    you = f"**You asked:** {quoted}\n\n" if quoted else ""
    limits = "**Limits in force:** " + " · ".join(req.limits) + "\n\n" if len(req.limits) > 1 else ""
    return (
        f"### Approval needed: run `{req.run_id}`\n{lead}{req.reason}\n\n{offered}{you}"
        f"**Aegis chose:** {chose_line(req.spec, req.backend)} · {req.estimated_vram_gb:.2f} GB on {req.gpu}: "
        f"{fits} · {req.isolation or 'isolation: unknown'}\n\n"
        f"**Spec** `{req.spec_hash}` (every field: the closed block under this card)\n\n"
        + "\n".join(money_rows(req))
        + f"\n\n{_eval_plan(req)}{limits}{remote_code_text(req)}"
        "An approval holds for exactly this spec and estimate. **Optimize** proposes a cheaper spec, "
        "which comes back here."
    )


def _eval_plan(req: ApprovalRequest) -> str:
    """What the evals after training will measure and cost (declared checks, a judge's tokens), when priced."""
    plan = req.eval_plan.strip()
    return f"{plan}\n\n" if plan else ""  # the plan names itself ("Evals after training, …")


def remote_code_text(req: ApprovalRequest) -> str:
    """The model's own code, named file by file with its digest: what a person approves running."""
    if not req.remote_code:
        return ""
    files = "\n".join(f"- `{f.name}` sha256 `{f.sha256}`" for f in req.remote_code)
    return f"**The model ships its own code, which this run executes:**\n{files}\n\n"


def approval_details(req: ApprovalRequest) -> str:
    """In the closed block under the card: every field, where each came from, and every priced attempt."""
    spec = json.dumps(req.spec.model_dump(mode="json"), indent=2)
    sources = f"\n\n{sources_line(req)}" if req.field_sources else ""
    rows = ["| Attempt | What changes | Cost | Time |", "|---|---|---|---|"]
    rows += [
        f"| {a.attempt} | {a.rule} | {usd(a.estimated_cost_usd)} | {a.estimated_minutes:.1f} min |"
        for a in req.attempts
    ]
    attempts = "\n\n" + "\n".join(rows) if req.attempts else ""
    return f"Spec {req.spec_hash} · quote {req.quote_hash}\n\n{spec}{sources}{attempts}"


def _pair(before: float | None, after: float | None, fmt: str = ".4f") -> str:
    return f"{num(before, fmt)} → {num(after, fmt)}"


def _loss_row(job: JobState) -> str | None:
    last = job.attempts[-1] if job.attempts else None
    if last is None:
        return None
    if last.initial_eval_loss is not None or last.final_eval_loss is not None:
        return f"| Held-out loss | {_pair(last.initial_eval_loss, last.final_eval_loss)} |"
    return f"| Train loss | {_pair(last.initial_train_loss, last.final_train_loss)} |"


def _eval_rows(metrics: dict[str, float | None], checks: dict[str, Any]) -> list[str]:
    """Task score and forgetting check, where the evals measured them (read defensively: older runs lack them)."""
    rows = []
    if metrics.get("task_rouge_l") is not None:
        exact = ""
        if metrics.get("task_exact") is not None:
            exact = f" · exact {_pair(metrics.get('task_exact_base'), metrics.get('task_exact'), '.0%')}"
        rows.append(
            f"| Task score (ROUGE-L, base → tuned) | {_pair(metrics.get('task_rouge_l_base'), metrics['task_rouge_l'], '.3f')}"
            f"{exact} |"
        )
    if metrics.get("forgetting_score") is not None:
        check = checks.get("forgetting")
        verdict = "" if check is None else (" · ok" if check.passed else " · **warning: it forgot**")
        rows.append(
            f"| General questions (base → tuned) | "
            f"{_pair(metrics.get('forgetting_score_base'), metrics['forgetting_score'], '.3f')}{verdict} |"
        )
    if metrics.get("degenerate_share") is not None:
        rows.append(f"| Degenerate answers | {metrics['degenerate_share']:.0%} of the tuned model's |")
    return rows


def result_rows(job: JobState, spent_usd: float) -> list[str]:
    """The figures a person wants at the end: loss, task score, forgetting, cost and time."""
    rows = ["| Result | Before → after, or value |", "|---|---|"]
    if (loss := _loss_row(job)) is not None:
        rows.append(loss)
    if job.eval_result is not None:
        checks = {c.name: c for c in job.eval_result.checks}
        rows += _eval_rows(job.eval_result.metrics, checks)
        failed = [c.name for c in job.eval_result.checks if not c.passed and c.severity == "gate"]
        verdict = "all gates passed" if job.eval_result.passed else f"**failed**: {', '.join(failed) or 'see report'}"
        rows.append(f"| Checks | {len(job.eval_result.checks)} · {verdict} |")
    train_s = sum(a.duration_s for a in job.attempts)
    eval_s = job.eval_result.metrics.get("eval_seconds") if job.eval_result is not None else None
    evals = f" + evals {eval_s:.0f} s" if isinstance(eval_s, int | float) else ""
    rows.append(f"| Cost · time | {usd(spent_usd)} · training {train_s:.0f} s{evals} |")
    return rows


def result_card(job: JobState, spent_usd: float) -> str:
    """A run's outcome as a short card: one line for a run that did not train, a few figures for one that did."""
    who = f" by `{job.decided_by}`" if job.decided_by else ""
    if job.status == JobStatus.CANCELLED:
        return f"**Cancelled**{who}: run `{job.run_id}` was not trained and nothing was spent."
    if job.status == JobStatus.REFUSED:
        reason = job.gate.reason if job.gate else "over the budget"
        return f"**Refused by the gate**: {reason}. Run `{job.run_id}` was not trained and nothing was spent."
    if job.status == JobStatus.SUCCEEDED:
        head = f"**Run `{job.run_id}` succeeded** (approved{who})"
    elif job.status == JobStatus.EVALS_FAILED and job.eval_result is not None:
        head = (
            f"**Run `{job.run_id}` trained, but its evals failed**: {eval_failure(job.eval_result)}. The model is kept"
        )
    else:
        last = job.attempts[-1] if job.attempts else None
        why = f" ({last.failure_class}: {last.error_message})" if last is not None and last.failure_class else ""
        head = f"**Run `{job.run_id}` {job.status}**{why}"
    spec = f"\n\n{chose_line(job.spec)}" if job.spec is not None else ""
    return md_safe(
        f"{head}.{spec}\n\n"
        + "\n".join(result_rows(job, spent_usd))
        + "\n\nThe full report is in the closed block below, and to download."
    )
