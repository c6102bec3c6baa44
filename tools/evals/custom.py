"""The checks a person declared in the spec (``evals:``), applied to the fine-tuned replies on the held-out prompts.

Each is a gate check ``custom:<name>`` whose value is its pass rate. A regex runs through the ``regex`` package with
a timeout per reply (REGEX_TIMEOUT_S) on at most MAX_CHARS characters, so a catastrophic pattern fails its rows
instead of hanging the evals. An ``lm_eval`` task needs lm-evaluation-harness and the Hub: where either is missing it
is a warning saying why it did not run. ``llm_judge`` runs in the aegis process (tools.evals.judge), not here.
"""

from __future__ import annotations

import importlib.util
import json
import re
from typing import Any

import regex
from jsonschema import Draft202012Validator

from tools.core.custom_evals import CustomEval
from tools.core.spec import EvalCheck
from tools.evals.scoring import MAX_CHARS, contains, exact, rouge_l

REGEX_TIMEOUT_S = 0.5
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")


def last_number(text: str) -> float | None:
    """The last number in a text: where a reply states its final answer (as GSM8K-style scoring reads it)."""
    found = NUMBER.findall(text[:MAX_CHARS])
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def _regex_ok(pattern: str, reply: str) -> bool:
    try:
        return regex.search(pattern, reply[:MAX_CHARS], timeout=REGEX_TIMEOUT_S) is not None
    except TimeoutError:
        return False


def _json_ok(schema: dict[str, Any], reply: str) -> bool:
    try:
        value = json.loads(reply[:MAX_CHARS].strip())
    except (json.JSONDecodeError, RecursionError):
        return False
    return Draft202012Validator(schema).is_valid(value)


def _numeric_ok(tolerance: float, reply: str, reference: str) -> bool | None:
    want = last_number(reference)
    if want is None:
        return None
    got = last_number(reply)
    return got is not None and abs(got - want) <= tolerance


def row_passes(check: CustomEval, reply: str, reference: str) -> bool | None:
    """Whether one reply passes; None when the row cannot be judged (no reference where one is needed)."""
    needs_reference = check.kind in ("exact", "contains", "numeric", "rouge_l")
    if needs_reference and not reference.strip():
        return None
    if check.kind == "exact":
        return bool(exact(reply, reference))
    if check.kind == "contains":
        return bool(contains(reply, reference))
    if check.kind == "rouge_l":
        return rouge_l(reply, reference) >= (check.threshold or 0.0)
    if check.kind == "numeric":
        return _numeric_ok(check.tolerance or 0.0, reply, reference)
    if check.kind == "regex":
        return _regex_ok(check.pattern or "", reply)
    if check.kind == "json_schema":
        return _json_ok(check.json_schema or {}, reply)
    raise ValueError(f"eval kind {check.kind} is not judged per row here")


def rate_check(check: CustomEval, verdicts: list[bool | None], what: str) -> EvalCheck:
    """The gate check of a declared eval from its per-row verdicts (None: not judged)."""
    judged = [v for v in verdicts if v is not None]
    name = f"custom:{check.name}"
    if not judged:
        return EvalCheck(
            name=name,
            passed=False,
            threshold=check.min_pass_rate,
            detail=f"{check.kind}: no held-out reply could be judged ({what})",
        )
    rate = sum(judged) / len(judged)
    return EvalCheck(
        name=name,
        passed=rate >= check.min_pass_rate,
        value=round(rate, 4),
        threshold=check.min_pass_rate,
        detail=f"{check.kind} {what}: {sum(judged)} of {len(judged)} fine-tuned replies pass",
    )


def describe(check: CustomEval) -> str:
    if check.kind == "regex":
        return f"/{check.pattern}/"
    if check.kind == "numeric":
        return f"last number within ±{check.tolerance:g} of the reference's"
    if check.kind == "rouge_l":
        return f"ROUGE-L ≥ {check.threshold:g} against the reference"
    if check.kind == "json_schema":
        return "JSON valid under the declared schema"
    return f"{check.kind} against the reference"


def lm_eval_check(check: CustomEval) -> EvalCheck:
    """A warning saying why the lm-evaluation-harness task did not run here."""
    if importlib.util.find_spec("lm_eval") is None:
        reason = "lm-evaluation-harness (lm_eval) is not installed here; install it where the Hub is reachable"
    else:
        reason = "the evals run in a sandbox without network, and lm-eval tasks download their data from the Hub"
    return EvalCheck(
        name=f"custom:{check.name}",
        passed=False,
        severity="warning",
        value="not run",
        detail=f"lm_eval task '{check.task}' did not run: {reason}",
    )


def custom_checks(declared: list[CustomEval], generations: list[dict[str, Any]]) -> list[EvalCheck]:
    """The declared checks on the fine-tuned replies, in declared order; llm_judge is left to the aegis process."""
    checks = []
    for check in declared:
        if check.kind == "llm_judge":
            continue
        if check.kind == "lm_eval":
            checks.append(lm_eval_check(check))
            continue
        verdicts = [row_passes(check, g["trained"], str(g.get("reference") or "")) for g in generations]
        for g, verdict in zip(generations, verdicts, strict=True):
            g.setdefault("custom", {})[check.name] = verdict
        checks.append(rate_check(check, verdicts, describe(check)))
    return checks
