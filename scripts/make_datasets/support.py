"""Northwind Cloud support conversations (data/support_train.jsonl, data/support_eval.jsonl) in the house format.

Northwind Cloud is a made-up company with specific, checkable product facts the base model cannot know.
"""

from __future__ import annotations

import random
from typing import Any

from .northwind_ops import OPS, Scenario
from .northwind_platform import PLATFORM

SIGNOFF = "— Northwind Support"

# product -> list of scenarios: (title, steps, two user phrasings). The last scenario of each product is held out.
SUPPORT: dict[str, list[Scenario]] = {**OPS, **PLATFORM}

SUPPORT_SYSTEM = [
    "You are the support assistant for Northwind Cloud.",
    "You answer Northwind Cloud support tickets in the house format.",
    "Northwind Cloud customer support. Be precise and brief.",
]
OPENERS = ["", "Hi, ", "Hello, ", "Hi team, ", "Urgent: ", "Quick question: ", "Good morning. ", "Hey, "]
CLOSERS = [
    "",
    " Thanks!",
    " Any ideas?",
    " Please help.",
    " Thanks in advance.",
    " What should I do?",
    " This is blocking our team.",
    " Can you advise?",
]
CONTEXTS = [
    "",
    " This started this morning.",
    " We're on the Standard plan.",
    " It worked fine last week.",
    " Our account is acme-ops.",
    " We're on the Business plan.",
    " It happens on every attempt.",
    " Our region is eu-1.",
]


def _support_user(rng: random.Random, core: str) -> str:
    text = rng.choice(OPENERS) + core
    text = text[0].upper() + text[1:]
    return text + rng.choice(CONTEXTS) + rng.choice(CLOSERS)


def _support_row(rng: random.Random, ticket: int, title: str, steps: list[str], user: str) -> dict[str, Any]:
    answer = "\n".join(
        [f"Ticket NW-{ticket}: {title}", "Fix:", *(f"{i}. {s}" for i, s in enumerate(steps, 1)), SIGNOFF]
    )
    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": rng.choice(SUPPORT_SYSTEM)})
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


def make_support(rng: random.Random, train_rows: int = 120, eval_rows: int = 20) -> tuple[list, list]:
    """Support tickets; the last scenario of every product is held out, so eval problems never appear in training."""
    tickets = rng.sample(range(1000, 10000), train_rows + eval_rows)
    train_scen = [s for scenarios in SUPPORT.values() for s in scenarios[:-1]]
    eval_scen = [scenarios[-1] for scenarios in SUPPORT.values()]

    def rows_for(scenarios: list, count: int) -> list[dict[str, Any]]:
        users: list[tuple[int, str]] = []
        seen: set[str] = set()
        i = 0
        while len(users) < count:
            idx = i % len(scenarios)
            user = _support_user(rng, scenarios[idx][2][(i // len(scenarios)) % 2])
            i += 1
            if user not in seen:
                seen.add(user)
                users.append((idx, user))
        rows = [_support_row(rng, tickets.pop(), scenarios[idx][0], scenarios[idx][1], user) for idx, user in users]
        rng.shuffle(rows)
        return rows

    return rows_for(train_scen, train_rows), rows_for(eval_scen, eval_rows)
