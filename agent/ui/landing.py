"""What a new tab shows before anything is typed (starters: the demo, a GPU estimate, the budget refusing), and
the approval buttons' words: each says what it does with the money."""

from __future__ import annotations

import chainlit as cl

from agent.ui.cards import worst_case_shown
from tools.core.money import usd
from tools.core.status import Decision
from tools.report.approval import ApprovalRequest

DEMO = (
    "LoRA fine-tune local:smollm2-135m-instruct on data/support_train.jsonl with eval data data/support_eval.jsonl "
    "for 2 epochs with batch size 2, learning rate 1e-3, seq_len 256, on cpu"
)
STARTERS: tuple[tuple[str, str, str], ...] = (
    ("Fine-tune the support bot (CPU, free)", DEMO, "/public/icons/train.svg"),
    (
        "What would a GPU cost?",
        "How much would a LoRA fine-tune of local:smollm2-135m-instruct on data/support_train.jsonl for 3 epochs "
        "cost on an a10g? Just estimate it.",
        "/public/icons/estimate.svg",
    ),
    (
        "A quick run on the tiny model",
        "LoRA fine-tune local:tiny-llama on data/sample.jsonl for 1 epoch with batch size 8 on cpu for 20 steps",
        "/public/icons/quick.svg",
    ),
    ("Past runs: compare and try them", "/runs", "/public/icons/runs.svg"),
    (
        "Ask for a GPU that is not here",
        "LoRA fine-tune local:tiny-llama on data/sample.jsonl on a10g for 20 steps, keep it under $0.001",
        "/public/icons/refuse.svg",
    ),
)


def starters() -> list[cl.Starter]:
    return [cl.Starter(label=label, message=message, icon=icon) for label, message, icon in STARTERS]


def spend_label(decision: Decision, req: ApprovalRequest) -> tuple[str, str]:
    """A button's words and icon: Approve names the money it allows, Cancel that nothing is spent."""
    if decision == Decision.APPROVE:
        ceiling = req.worst_case_usd if req.worst_case_usd is not None else req.estimated_cost_usd
        extra = f" (at most {worst_case_shown(req)} with retries)" if ceiling > req.estimated_cost_usd else ""
        return f"Approve: spend {usd(req.estimated_cost_usd)}{extra}", "circle-dollar-sign"
    if decision == Decision.OPTIMIZE:
        return "Optimize: find a cheaper spec", "piggy-bank"
    return "Cancel: spend nothing", "circle-x"
