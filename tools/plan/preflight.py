"""Free, local checks of the data that must pass before anything costs money or a person is asked for it.

A run that could never have worked should fail here, in seconds and for nothing, not after a GPU
started: the dataset parses in its format, every row renders through the model's chat template and
keeps at least one target token after masking and truncation at ``seq_len``, and the share of rows
cut at ``seq_len`` is reported. The script and the CPU smoke run are checked by ``tools.run.smoke``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from tools.core.status import CheckStatus
from tools.inputs.prepared import PreparedData, RowFacts, measure_rows

TRUNCATION_WARN_SHARE = 0.25


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
        return [c for c in self.checks if c.status == CheckStatus.FAIL]

    def summary(self) -> str:
        if self.passed:
            warned = [c.detail for c in self.checks if c.status == CheckStatus.WARN]
            return "pre-flight passed" + (f" with warnings: {'; '.join(warned)}" if warned else "")
        return "pre-flight failed: " + "; ".join(f"{c.name}: {c.detail}" for c in self.failures)


# -- data ---------------------------------------------------------------------------------------


def _rows_named(numbers: list[int], total: int) -> str:
    named = ", ".join(str(n) for n in numbers)
    more = total - len(numbers)
    return named + (f" and {more} more" if more > 0 else "")


def judge_rows(facts: RowFacts, seq_len: int) -> list[PreflightCheck]:
    """Pre-flight's verdicts on rows measured once: row 1 rendered, the chat template, the target tokens.

    Exact with the model's tokenizer. Without it the lengths are chars/4 estimates, so a row that seems to
    lose its reply is a warning, not a failure.
    """
    source = facts.source
    checks = [_first_row_check(facts)]
    if facts.template_errors:
        checks.append(
            PreflightCheck(
                name="chat_template",
                status="fail",
                detail=f"{source}: the chat template cannot render {facts.template_errors} row(s): "
                + "; ".join(facts.template_errors_named)
                + ". Fix the roles of those rows (user/assistant, in turn) or use a model whose template accepts them",
            )
        )
    if not facts.no_target_rows:
        detail = f"{source}: all {facts.rows} rows keep target tokens at seq_len {seq_len}"
        return [*checks, PreflightCheck(name="target_tokens", status="pass", detail=detail)]
    longest = facts.longest_masked_prompt
    fix = (
        f"raise seq_len to at least {longest + 2} (the longest such prompt is {longest} tokens), "
        "or shorten or remove those rows"
        if longest
        else "remove those rows or give them text"
    )
    rows = _rows_named(facts.no_target_named, facts.no_target_rows)
    estimate = "" if facts.exact else ", by a chars/4 estimate"
    detail = (
        f"{source}: {facts.no_target_rows} row(s) keep no target token after masking and truncation at "
        f"seq_len {seq_len} (rows {rows}){estimate}; {fix}"
    )
    return [*checks, PreflightCheck(name="target_tokens", status="fail" if facts.exact else "warn", detail=detail)]


def _first_row_check(facts: RowFacts) -> PreflightCheck:
    """The first row as the model will see it, so a person can spot a wrong template at a glance."""
    source = facts.source
    if facts.first_row_error is not None:
        detail = f"{source} row 1 does not render: {facts.first_row_error}"
        return PreflightCheck(name="rendering", status="fail", detail=detail)
    if facts.first_row is None:
        return PreflightCheck(name="rendering", status="pass", detail=f"{source}: plain text rows (no chat template)")
    how = "the model's chat template" if facts.chat_template else "the plain template"
    text = facts.first_row
    shown = text if len(text) <= 240 else text[:240] + "…"
    return PreflightCheck(name="rendering", status="pass", detail=f"{source} row 1 through {how}: {shown!r}")


def data_checks(data: PreparedData, seq_len: int) -> list[PreflightCheck]:
    """Every data check of a prepared spec, from what was measured when it was prepared: nothing is read again."""
    checks: list[PreflightCheck] = []
    for facts in (data.train_rows, data.eval_rows):
        if facts is None:
            continue
        parsed = f"{facts.source}: {facts.rows} rows in format '{facts.format}'"
        checks.append(PreflightCheck(name="dataset_parses", status="pass", detail=parsed))
        checks.extend(judge_rows(facts, seq_len))
    checks.append(truncation_check(data.train_rows.rows, data.train_rows.truncated_rows, seq_len))
    return checks


def check_rows(
    records: list[dict[str, Any]], fmt: str, tokenizer: Any | None, seq_len: int, *, source: str
) -> tuple[list[PreflightCheck], int]:
    """Measure and judge rows in one go (for rows not prepared from a spec); returns checks and truncations."""
    _lengths, facts = measure_rows(records, fmt, tokenizer, seq_len, source=source)
    return [c for c in judge_rows(facts, seq_len) if c.name != "rendering"], facts.truncated_rows


def truncation_check(rows: int, truncated: int, seq_len: int) -> PreflightCheck:
    share = truncated / rows if rows else 0.0
    hint = "; raise seq_len or expect the model to learn shorter replies" if share > TRUNCATION_WARN_SHARE else ""
    return PreflightCheck(
        name="truncation",
        status="warn" if share > TRUNCATION_WARN_SHARE else "pass",
        detail=f"{truncated} of {rows} training rows ({share:.0%}) are cut at seq_len {seq_len}{hint}",
    )
