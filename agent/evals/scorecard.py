"""The scorecard: JSON for machines, Markdown for people."""

from __future__ import annotations

import re
from pathlib import Path

from agent.evals.scenarios import ScenarioResult, Scorecard
from agent.evals.scoring import snippet


def write_scorecard(card: Scorecard, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "scorecard.json"
    md_path = out_dir / "scorecard.md"
    json_path.write_text(card.model_dump_json(indent=2) + "\n", encoding="utf-8")
    md_path.write_text(scorecard_markdown(card), encoding="utf-8")
    return json_path, md_path


def _cell(text: str) -> str:
    return re.sub(r"\s+", " ", text).replace("|", "\\|")


def scorecard_markdown(card: Scorecard) -> str:
    lines = [*_summary(card), *_scenario_table(card), *_failed_checks(card), "", "## Details", ""]
    for r in card.scenarios:
        lines += _details(r)
    return "\n".join(lines) + "\n"


def _summary(card: Scorecard) -> list[str]:
    return [
        f"# Agent eval scorecard — {'PASS' if card.ok else 'FAIL'}",
        "",
        "| Metric | Value |",
        "|---|---|",
        f"| Model | {card.model} |",
        f"| Scenarios | {len(card.scenarios)} ({sum(r.passed for r in card.scenarios)} fully passed) |",
        f"| Score | {card.passed_checks}/{card.total_checks} = {card.score:.3f} (minimum {card.min_score:g}) |",
        f"| Safety checks failed | {card.safety_failures} of {card.safety_checks} |",
        f"| Started | {card.started_at.isoformat(timespec='seconds')} |",
        f"| Duration | {card.duration_s:.0f} s |",
        f"| Scenarios folder | {card.scenarios_dir} |",
    ]


def _scenario_table(card: Scorecard) -> list[str]:
    lines = [
        "",
        "## Scenarios",
        "",
        "| Scenario | Checks | Safety | Gate | Status | Tool trajectory |",
        "|---|---|---|---|---|---|",
    ]
    for r in card.scenarios:
        ok = sum(c.passed for c in r.checks)
        safety = "ok" if r.safety_passed else "**FAILED**"
        lines.append(
            f"| {r.name} | {ok}/{len(r.checks)} | {safety} | {', '.join(r.gate_outcomes) or '—'} | "
            f"{r.final_status} | {' → '.join(r.trajectory) or '—'} |"
        )
    return lines


def _failed_checks(card: Scorecard) -> list[str]:
    failed = [(r, c) for r in card.scenarios for c in r.checks if not c.passed]
    lines = ["", "## Failed checks", ""]
    if not failed:
        return [*lines, "None."]
    lines += ["| Scenario | Check | Kind | Detail |", "|---|---|---|---|"]
    return lines + [f"| {r.name} | {c.name} | {c.kind} | {_cell(c.detail)} |" for r, c in failed]


def _details(r: ScenarioResult) -> list[str]:
    lines = [
        f"### {r.name} — {'pass' if r.passed else 'FAIL'}",
        "",
        r.description.strip(),
        "",
        f"- Trajectory: {' → '.join(r.trajectory) or '(no tool called)'}",
        f"- Final status: {r.final_status}; gate: {', '.join(r.gate_outcomes) or 'never asked'}; "
        f"attempts: {', '.join(r.attempts) or 'none'}; {r.duration_s:.0f} s",
        f"- Runs: {', '.join(r.run_dirs) or 'none'}",
        f"- Final answer: {snippet(r.final_answer, 300) or '(none)'}",
    ]
    if r.error:
        lines.append(f"- Error: {r.error}")
    lines += ["", "| Check | Kind | Result | Detail |", "|---|---|---|---|"]
    lines += [f"| {c.name} | {c.kind} | {'pass' if c.passed else '**FAIL**'} | {_cell(c.detail)} |" for c in r.checks]
    lines.append("")
    return lines
