"""Free, local checks of the data that must pass before anything costs money or a person is asked for it.

A run that could never have worked should fail here, in seconds and for nothing, not after a GPU
started: the dataset parses in its format, every row renders through the model's chat template and
keeps at least one target token after masking and truncation at ``seq_len``, and the share of rows
cut at ``seq_len`` is reported. The script and the CPU smoke run are checked by ``tools.run.smoke``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tools.core.errors import DataError
from tools.core.spec import TrainingSpec
from tools.inputs.dataset import (
    APPROX_CHARS_PER_TOKEN,
    approx_token_count,
    load_records,
    load_tokenizer_offline,
    resolve_format,
)
from tools.inputs.local_models import hub_reachable
from tools.inputs.model_config import hub_id
from tools.recipe.formatting import IGNORE_INDEX, encode_record, prompt_text, to_messages

ROWS_NAMED = 5
TRUNCATION_WARN_SHARE = 0.25

CheckStatus = Literal["pass", "warn", "fail"]


class PreflightCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    status: CheckStatus
    detail: str


class PreflightReport(BaseModel):
    """What pre-flight found for one spec; the gate and the run guard read ``passed`` for the same spec hash."""

    model_config = ConfigDict(extra="forbid")

    spec_hash: str
    passed: bool
    checks: list[PreflightCheck]
    rows: int = 0
    truncated_rows: int = 0
    truncated_share: float = 0.0
    tokenizer: str = ""
    smoke: dict[str, Any] | None = None

    @property
    def failures(self) -> list[PreflightCheck]:
        return [c for c in self.checks if c.status == "fail"]

    def summary(self) -> str:
        if self.passed:
            warned = [c.detail for c in self.checks if c.status == "warn"]
            return "pre-flight passed" + (f" with warnings: {'; '.join(warned)}" if warned else "")
        return "pre-flight failed: " + "; ".join(f"{c.name}: {c.detail}" for c in self.failures)


# -- data ---------------------------------------------------------------------------------------


def _load_tokenizer(model_name: str) -> Any | None:
    """The model's own tokenizer: on this machine, or from the hub when it answers; None when neither."""
    tokenizer = load_tokenizer_offline(model_name)
    if tokenizer is None and hub_reachable() and not model_name.lower().startswith("local:"):
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(hub_id(model_name), trust_remote_code=False)
        except Exception:  # gated, missing or no tokenizer files: the check falls back to chars/4
            tokenizer = None
    return tokenizer


def _rows_named(numbers: list[int]) -> str:
    named = ", ".join(str(n) for n in numbers[:ROWS_NAMED])
    more = len(numbers) - ROWS_NAMED
    return named + (f" and {more} more" if more > 0 else "")


def check_rows(
    records: list[dict[str, Any]], fmt: str, tokenizer: Any | None, seq_len: int, *, source: str
) -> tuple[list[PreflightCheck], int]:
    """Render every row as the script will and find rows left with nothing to learn; returns checks and truncations.

    Exact with the model's tokenizer. Without it the prompt length is approximated (chars/4), so a row
    that seems to lose its reply is a warning, not a failure.
    """
    empty, template_errors, truncated, longest_prompt = [], [], 0, 0
    for number, record in enumerate(records, start=1):
        if tokenizer is None:
            split = to_messages(record, fmt)
            total = approx_token_count(record, fmt)
            prompt = 0 if split is None else math.ceil(len(prompt_text(None, split[0])) / APPROX_CHARS_PER_TOKEN)
            truncated += total > seq_len
            if prompt >= seq_len - 1 or (split is None and total < 2):
                empty.append(number)
                longest_prompt = max(longest_prompt, prompt)
            continue
        try:
            ids, labels, was_truncated = encode_record(tokenizer, record, fmt, seq_len)
        except Exception as exc:  # a chat template raises its own errors (roles out of order, unknown role)
            template_errors.append(
                f"row {number}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            )
            continue
        truncated += was_truncated
        if all(label == IGNORE_INDEX for label in labels[1:]):
            empty.append(number)
            _full_ids, full_labels, _ = encode_record(tokenizer, record, fmt, 1 << 62)
            longest_prompt = max(longest_prompt, sum(label == IGNORE_INDEX for label in full_labels))
    checks = []
    if template_errors:
        checks.append(
            PreflightCheck(
                name="chat_template",
                status="fail",
                detail=f"{source}: the chat template cannot render {len(template_errors)} row(s): "
                + "; ".join(template_errors[:ROWS_NAMED])
                + ". Fix the roles of those rows (user/assistant, in turn) or use a model whose template accepts them",
            )
        )
    if empty:
        needed = longest_prompt + 2
        exact = tokenizer is not None
        fix = (
            f"raise seq_len to at least {needed} (the longest such prompt is {longest_prompt} tokens), "
            "or shorten or remove those rows"
            if longest_prompt
            else "remove those rows or give them text"
        )
        checks.append(
            PreflightCheck(
                name="target_tokens",
                status="fail" if exact else "warn",
                detail=f"{source}: {len(empty)} row(s) keep no target token after masking and truncation at "
                f"seq_len {seq_len} (rows {_rows_named(empty)}){'' if exact else ', by a chars/4 estimate'}; {fix}",
            )
        )
    else:
        checks.append(
            PreflightCheck(
                name="target_tokens",
                status="pass",
                detail=f"{source}: all {len(records)} rows keep target tokens at seq_len {seq_len}",
            )
        )
    return checks, truncated


def _sample_check(records: list[dict[str, Any]], fmt: str, tokenizer: Any | None, source: str) -> PreflightCheck:
    """The first row as the model will see it, so a person can spot a wrong template at a glance."""
    split = to_messages(records[0], fmt)
    if split is None:
        return PreflightCheck(name="rendering", status="pass", detail=f"{source}: plain text rows (no chat template)")
    try:
        text = prompt_text(tokenizer, split[0]) + split[1].strip()
    except Exception as exc:  # named as a failure of row 1; check_rows names every other row
        return PreflightCheck(name="rendering", status="fail", detail=f"{source} row 1 does not render: {exc}")
    how = "the model's chat template" if tokenizer is not None and tokenizer.chat_template else "the plain template"
    shown = text if len(text) <= 240 else text[:240] + "…"
    return PreflightCheck(name="rendering", status="pass", detail=f"{source} row 1 through {how}: {shown!r}")


def check_data(spec: TrainingSpec, tokenizer: Any | None) -> tuple[list[PreflightCheck], int, int]:
    """Parse the training (and eval) file in the declared format and check every row; returns checks, rows, truncated."""
    checks, rows, truncated = [], 0, 0
    paths = [("training data", spec.dataset_path)]
    if spec.eval_dataset_path:
        paths.append(("eval data", spec.eval_dataset_path))
    for label, path in paths:
        source = f"{label} '{Path(path).name}'"
        try:
            records = load_records(path)
            fmt = resolve_format(records, spec.dataset_format, source=source)
        except DataError as exc:
            checks.append(PreflightCheck(name="dataset_parses", status="fail", detail=str(exc)))
            continue
        checks.append(
            PreflightCheck(
                name="dataset_parses", status="pass", detail=f"{source}: {len(records)} rows in format '{fmt}'"
            )
        )
        checks.append(_sample_check(records, fmt, tokenizer, source))
        row_checks, cut = check_rows(records, fmt, tokenizer, spec.seq_len, source=source)
        checks.extend(row_checks)
        if label == "training data":
            rows, truncated = len(records), cut
    return checks, rows, truncated


def truncation_check(rows: int, truncated: int, seq_len: int) -> PreflightCheck:
    share = truncated / rows if rows else 0.0
    hint = "; raise seq_len or expect the model to learn shorter replies" if share > TRUNCATION_WARN_SHARE else ""
    return PreflightCheck(
        name="truncation",
        status="warn" if share > TRUNCATION_WARN_SHARE else "pass",
        detail=f"{truncated} of {rows} training rows ({share:.0%}) are cut at seq_len {seq_len}{hint}",
    )


def load_tokenizer(model_name: str) -> Any | None:
    return _load_tokenizer(model_name)
