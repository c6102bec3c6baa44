"""What the CLI, Chainlit and the report show of an estimate: one table, one money format (``usd``)."""

from __future__ import annotations

import psutil
from rich.table import Table

from tools.core.money import usd
from tools.core.spec import BudgetPolicy, CostBreakdown, CostEstimate
from tools.plan.quote import Quote

GB = 1e9


def _duration(minutes: float) -> str:
    return f"{minutes:.1f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def _count(value: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{unit}"
    return str(int(value))


def _against_this_machine(needed_gb: float) -> str:
    """A RAM need beside this machine's total RAM: only the display may look at the machine, not the estimate."""
    total_gb = psutil.virtual_memory().total / GB
    text = f"{needed_gb:.2f} GB of {total_gb:.1f} GB RAM here"
    return text if needed_gb <= total_gb else f"[red]{text}: does not fit[/red]"


def _host_ram(b: CostBreakdown, needed_gb: float) -> str:
    """cpu: beside this machine's RAM. A GPU machine's RAM is not in the catalog, so only the need is shown."""
    if b.gpu == "cpu":
        return _against_this_machine(needed_gb) + " (training runs in RAM)"
    processes = f", {b.num_gpus} processes" if b.num_gpus > 1 else ""
    return f"{needed_gb:.2f} GB on the {b.gpu} machine{processes} (the catalog has no host RAM figure)"


def format_quote_table(quote: Quote) -> Table:
    """The quote as a table: the estimate against its limits, then what the approval will show beside it."""
    table = format_estimate_table(quote.estimate, quote.policy)
    place = quote.estimate.placement
    if place is not None:
        table.add_row("Where", place.where())
    if quote.worst_case is not None:
        worst = quote.worst_case
        costs = ", ".join(f"#{a.attempt} {usd(a.estimated_cost_usd)}" for a in worst.attempts)
        table.add_row("Worst case, every retry", f"{usd(worst.worst_case_usd)} ({costs})")
    if quote.cap is not None:
        cap = quote.cap
        table.add_row(
            "One attempt",
            cap.short_by
            or f"stopped after {_duration(cap.timeout_s / 60)}, bills at most {usd(cap.max_attempt_cost_usd)}",
        )
    table.add_row("Checkpoint", f"every {quote.checkpoint_every:,} steps")
    if quote.cpu_offer is not None:
        offer = quote.cpu_offer
        table.add_row(
            "On this CPU instead",
            f"{usd(offer.estimated_cost_usd)}, {_duration(offer.estimated_duration_min)}, "
            f"{offer.estimated_vram_gb:.1f} GB ({'fits' if offer.fits else 'does not fit'})",
        )
    if quote.offer is not None:
        table.add_row("Optimizer", quote.offer.summary)
    elif quote.no_offer:
        table.add_row("Optimizer", quote.no_offer)
    table.add_row("Quote", quote.quote_hash)
    return table


def format_estimate_table(estimate: CostEstimate, policy: BudgetPolicy | None = None) -> Table:
    """The estimate as a table for the CLI, with the budget limits beside the cost when a policy is given."""
    b = estimate.cost_breakdown
    table = Table(title=f"Estimate on {b.num_gpus}x {b.gpu}" if b.num_gpus > 1 else f"Estimate on {b.gpu}")
    table.add_column("Item")
    table.add_column("Value", justify="right")
    table.add_row("Cost", usd(estimate.estimated_cost_usd))
    if policy is not None:
        table.add_row("Soft threshold (auto-approve)", usd(policy.soft_threshold_usd))
        table.add_row("Hard limit", usd(policy.max_budget_usd))
        over = estimate.estimated_cost_usd > policy.max_budget_usd
        table.add_row("Within hard limit", "[red]no[/red]" if over else "yes")
    source = "measured" if b.time_source.startswith("measured") else "modelled"
    table.add_row("Time", f"{_duration(estimate.estimated_duration_min)} ({source})")
    table.add_row("Price", f"{usd(b.gpu_price_usd_per_sec * 3600)}/h per GPU")
    parts = (
        f"weights {b.weights_gb:.2f} + grads {b.gradients_gb:.2f} + optimizer {b.optimizer_gb:.2f} "
        f"+ activations {b.activations_gb:.2f} + overhead {b.overhead_gb:.2f}"
    )
    table.add_row("VRAM per GPU", f"{estimate.estimated_vram_gb:.2f} GB of {b.gpu_memory_gb:g} GB")
    table.add_row("VRAM parts (GB)", parts)
    table.add_row("Fits", "yes" if b.fits else "[red]no[/red]")
    if b.host_ram_gb is not None:
        table.add_row("Host RAM, training", _host_ram(b, b.host_ram_gb))
    if b.eval_memory_gb is not None:
        table.add_row("Memory, evals (CPU here)", _against_this_machine(b.eval_memory_gb))
    table.add_row("Precision", b.dtype)
    table.add_row("Steps", f"{b.total_steps:,} (effective batch {b.effective_batch_size})")
    approx = " (approx.)" if b.tokens_approximate else ""
    table.add_row("Dataset", f"{b.dataset_rows:,} rows, {b.dataset_tokens:,} tokens{approx}")
    table.add_row("Train tokens per epoch", f"{b.train_tokens_per_epoch:,} ({b.train_rows:,} rows)")
    table.add_row("Parameters", f"{_count(b.total_params)} total, {_count(b.trainable_params)} trainable")
    table.add_row("Compute", f"{b.flops:.3g} FLOPs at {b.tflops_effective:.3g} TFLOP/s effective")
    for note in b.notes:
        table.add_row("Note", note)
    return table
