"""The spend report as a picture: per group, billed and held money stacked (what counts against the limits) and the
money refused beside it, so an operator sees at a glance who or what spends, and who keeps hitting a limit."""

from __future__ import annotations

from pathlib import Path

from tools.core.money import usd
from tools.policy.spend_report import SpendReport

CAPTURED_COLOR, HELD_COLOR, REFUSED_COLOR = "#2a6f97", "#f4a259", "#bc4749"
MOST_GROUPS = 40  # more bars than this cannot be read; the rest are summed as one
LABEL_CHARS = 18


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def plot_spend(report: SpendReport, path: Path) -> Path:
    """Write the report's chart as a PNG at ``path`` (its folder made if missing) and return the path."""
    from matplotlib.figure import Figure  # the object API: no pyplot global state, no display needed (Agg)

    groups = report.groups[:MOST_GROUPS]
    rest = report.groups[MOST_GROUPS:]
    labels = [_label(g.group) for g in groups] + ([f"{len(rest)} more"] if rest else [])
    captured = [g.captured_usd for g in groups] + ([sum(g.captured_usd for g in rest)] if rest else [])
    held = [g.held_usd for g in groups] + ([sum(g.held_usd for g in rest)] if rest else [])
    refused = [g.refused_usd for g in groups] + ([sum(g.refused_usd for g in rest)] if rest else [])
    fig = Figure(figsize=(max(7.0, 0.6 * len(labels) + 3), 4.5), layout="constrained")
    ax = fig.subplots()
    xs = list(range(len(labels)))
    width = 0.38
    left = [x - width / 2 for x in xs]
    ax.bar(left, captured, width, color=CAPTURED_COLOR, label="captured (billed)")
    ax.bar(left, held, width, bottom=captured, color=HELD_COLOR, label="held (running)")
    ax.bar([x + width / 2 for x in xs], refused, width, color=REFUSED_COLOR, hatch="//", label="refused")
    ax.set_xticks(xs, labels, rotation=30 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center")
    ax.set_ylabel("US dollars")
    totals = report.totals
    ax.set_title(
        f"Spend by {report.by.value} since {report.since.isoformat()} (UTC)\n{usd(totals.captured_usd)} billed, "
        f"{usd(totals.held_usd)} held, {usd(totals.refused_usd)} refused",
        fontsize="medium",
    )
    if not labels:
        ax.text(0.5, 0.5, "nothing spent, held or refused", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    return path
