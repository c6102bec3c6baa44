"""An LLM judge a person declares (``kind: llm_judge`` with a rubric): the configured chat model grades each reply.

It runs in the aegis process after the sandboxed worker returns (the sandbox has no network), against the
OpenAI-compatible endpoint the agent uses: AEGIS_MODEL=openai:NAME, with OPENAI_BASE_URL and OPENAI_API_KEY.
Without one the check fails and says how to configure it. Its cost in tokens is estimated from characters / 4
(CHARS_PER_TOKEN), a rough rule for English text, for the approval.
"""

from __future__ import annotations

import os
from typing import Any

from openai import OpenAI, OpenAIError

from tools.core.custom_evals import CustomEval
from tools.core.settings import settings
from tools.core.spec import EvalCheck
from tools.evals.custom import rate_check
from tools.evals.scoring import MAX_CHARS

CHARS_PER_TOKEN = 4
JUDGE_MAX_TOKENS = 60
SYSTEM = (
    "You grade one reply of a fine-tuned model against a rubric. Answer PASS or FAIL on the first line, "
    "then one short sentence saying why. Judge only by the rubric."
)
NOT_CONFIGURED = (
    "no chat model is configured to judge: set AEGIS_MODEL=openai:NAME and OPENAI_BASE_URL (and OPENAI_API_KEY "
    "where the endpoint needs one)"
)


def judge_model() -> str | None:
    """The judge's model name: the agent's OpenAI-compatible model, when one is configured."""
    choice = settings().model
    if not choice.startswith("openai:") or not (os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY")):
        return None
    return choice.removeprefix("openai:") or None


def _question(check: CustomEval, row: dict[str, Any]) -> str:
    return (
        f"Rubric:\n{check.rubric}\n\nPrompt:\n{str(row.get('prompt', ''))[:MAX_CHARS]}\n\n"
        f"Reference answer:\n{str(row.get('reference') or '(none)')[:MAX_CHARS]}\n\n"
        f"Reply to grade:\n{str(row.get('trained', ''))[:MAX_CHARS]}"
    )


def verdict(text: str) -> bool | None:
    """PASS / FAIL from the judge's first word; None when it said neither."""
    words = text.strip().split()
    first = words[0].strip("*:.,").upper() if words else ""
    return True if first == "PASS" else False if first == "FAIL" else None


def judge_check(check: CustomEval, generations: list[dict[str, Any]]) -> EvalCheck:
    """The gate check of a judge: each fine-tuned reply graded by the chat model; fails when none is configured."""
    name = judge_model()
    if name is None:
        return EvalCheck(
            name=f"custom:{check.name}", passed=False, threshold=check.min_pass_rate, detail=NOT_CONFIGURED
        )
    client = OpenAI(
        base_url=os.environ.get("OPENAI_BASE_URL") or None,
        api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
        timeout=settings().model_timeout_s,
        max_retries=0,
    )
    verdicts: list[bool | None] = []
    for row in generations:
        try:
            reply = client.chat.completions.create(
                model=name,
                messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": _question(check, row)}],
                max_tokens=JUDGE_MAX_TOKENS,
                temperature=0,
            )
        except OpenAIError as exc:
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            return EvalCheck(
                name=f"custom:{check.name}",
                passed=False,
                threshold=check.min_pass_rate,
                detail=f"the judge model '{name}' could not be reached: {first}",
            )
        said = verdict(reply.choices[0].message.content or "") if reply.choices else None
        row.setdefault("custom", {})[check.name] = said
        verdicts.append(said)
    return rate_check(check, verdicts, f"by {name} with the rubric")


def judge_tokens(check: CustomEval, rows: int, prompt_tokens: int, reply_tokens: int) -> int:
    """At most how many tokens a judge uses: rows x (system + rubric + prompt + reply + its answer)."""
    fixed = (len(SYSTEM) + len(check.rubric or "")) // CHARS_PER_TOKEN
    return rows * (fixed + prompt_tokens + 2 * reply_tokens + JUDGE_MAX_TOKENS)
