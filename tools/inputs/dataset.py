"""Read a dataset file into records and measure it in the model's own tokens.

The estimator's token counts come from here, using the same ``encode_record`` the training script
runs, so "tokens" means what the model will really see (prompt template, eos, truncation included).
Every problem is a DataError naming the file and the line or row, never a traceback.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.core.errors import DataError
from tools.core.paths import resolve_dataset_path
from tools.inputs.datafile import open_dataset, read_dataset_bytes
from tools.recipe.formatting import FORMATS, detect_format, encode_record, prompt_text, to_messages

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
# Without the model's tokenizer, English text averages about 4 characters per BPE token.
APPROX_CHARS_PER_TOKEN = 4
APPROX_TOKENIZER = "approx:chars/4"
_REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "prompt_completion": ("prompt", "completion"),
    "instruction": ("instruction", "output"),
    "messages": ("messages",),
}


class DatasetStats(BaseModel):
    """A dataset measured in tokens: what the estimator needs to price a run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: int = Field(ge=1)
    format: str
    tokens: int = Field(ge=0, description="Sum over rows of the encoded length after truncation to seq_len.")
    mean_tokens_per_row: float = Field(ge=0, description="After truncation, so tokens == rows * mean.")
    max_tokens_per_row: int = Field(ge=0, description="Before truncation: the seq_len that would fit every row.")
    truncated_rows: int = Field(ge=0)
    seq_len: int = Field(ge=1)
    approximate: bool
    tokenizer: str


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a .jsonl, .json (a list or {"data": [...]}), .csv or .parquet file inside the allowed folders."""
    file = resolve_dataset_path(path)
    suffix = file.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(f"dataset '{file.name}' has an unsupported type; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    if suffix in (".csv", ".parquet"):
        with open_dataset(path) as (_fd, real, _size):  # the size limit and the link check, before reading
            records = _read_table(real, suffix.lstrip("."))
    else:
        records = parse_records(read_dataset_bytes(path), suffix, name=str(file))
    if not records:
        raise DataError(f"dataset '{file}' is empty: it has no records to train on")
    return records


def read_snapshot_records(file: Path) -> list[dict[str, Any]]:
    """Records of a snapshot Aegis copied into a run folder (the data an attempt trained on)."""
    suffix = file.suffix.lower()
    if suffix in (".csv", ".parquet"):
        return _read_table(file, suffix.lstrip("."))
    return parse_records(file.read_bytes(), suffix, name=str(file))


def parse_records(data: bytes, suffix: str, *, name: str) -> list[dict[str, Any]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"dataset '{name}' is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    return _read_jsonl(text, name) if suffix == ".jsonl" else _read_json(text, name)


def _read_jsonl(text: str, name: str) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            raise DataError(f"dataset '{name}' line {number} is not valid JSON: {reason}") from None
        if not isinstance(value, dict):
            raise DataError(f"dataset '{name}' line {number} is a JSON {type(value).__name__}, not an object")
        records.append(value)
    return records


def _read_json(text: str, name: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"dataset '{name}' is not valid JSON (line {exc.lineno}): {exc.msg}") from None
    except RecursionError:
        raise DataError(f"dataset '{name}' is not usable JSON: nested too deeply") from None
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]
    if not isinstance(value, list):
        raise DataError(f"dataset '{name}' must hold a JSON list of records or an object with a 'data' list")
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            raise DataError(f"dataset '{name}' record {number} is a JSON {type(item).__name__}, not an object")
    return value


def _read_table(file: Path, kind: str) -> list[dict[str, Any]]:
    """CSV and Parquet through `datasets`, with its cache in a throwaway folder so nothing lingers."""
    import datasets

    bars_were_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        with tempfile.TemporaryDirectory(prefix="aegis-ds-") as cache:
            table = datasets.load_dataset(kind, data_files=str(file), split="train", cache_dir=cache)
            return table.to_list()
    except Exception as exc:  # pyarrow/pandas parse errors have many types; one message for the person
        text = str(exc).strip().splitlines()
        raise DataError(
            f"dataset '{file}' cannot be read as {kind}: {text[0] if text else type(exc).__name__}"
        ) from None
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


def _row_problem(record: dict[str, Any], fmt: str) -> str | None:
    missing = [c for c in _REQUIRED_COLUMNS[fmt] if record.get(c) is None]
    if missing:
        return f"lacks {', '.join(repr(c) for c in missing)} (found {sorted(record)})"
    if fmt == "text" and not isinstance(record["text"], str):
        return "has a 'text' that is not a string"
    if fmt == "messages":
        if not isinstance(record["messages"], list):
            return "has 'messages' that is not a list"
        try:
            to_messages(record, fmt)
        except (KeyError, TypeError, ValueError) as exc:
            return f"has unusable 'messages' ({exc})"
    return None


def resolve_format(records: list[dict[str, Any]], declared: str, *, source: str = "dataset") -> str:
    """The format every row is in: 'auto' reads the first row; a row that does not fit is named."""
    if not records:
        raise DataError(f"{source} is empty: it has no records to train on")
    if declared == "auto":
        try:
            fmt = detect_format(records[0])
        except ValueError as exc:
            raise DataError(f"{source} row 1: {exc}") from None
    elif declared in FORMATS:
        fmt = declared
    else:
        raise DataError(f"unknown dataset format '{declared}'; use auto or one of {', '.join(FORMATS)}")
    for number, record in enumerate(records, start=1):
        problem = _row_problem(record, fmt)
        if problem:
            raise DataError(f"{source} row {number} {problem}, which format '{fmt}' needs")
    return fmt


def approx_token_count(record: dict[str, Any], fmt: str) -> int:
    """Tokens a row would encode to, without a tokenizer: ceil(chars / 4) of the text the model sees, plus eos."""
    split = to_messages(record, fmt)
    if split is None:
        chars = len(str(record["text"]))
    else:
        prompt_messages, reply = split
        chars = len(prompt_text(None, prompt_messages)) + len(reply.strip())
    return math.ceil(chars / APPROX_CHARS_PER_TOKEN) + 1


def measure_records(records: list[dict[str, Any]], fmt: str, tokenizer: Any | None, seq_len: int) -> DatasetStats:
    """Token statistics of records already read; exact with a tokenizer, approximate (chars/4) without one."""
    lengths = []
    for record in records:
        if tokenizer is None:
            lengths.append(approx_token_count(record, fmt))
        else:
            ids, _labels, _truncated = encode_record(tokenizer, record, fmt, 1 << 62)
            lengths.append(len(ids))
    kept = [min(n, seq_len) for n in lengths]
    name = tokenizer_name(tokenizer)
    return DatasetStats(
        rows=len(records),
        format=fmt,
        tokens=sum(kept),
        mean_tokens_per_row=sum(kept) / len(kept),
        max_tokens_per_row=max(lengths),
        truncated_rows=sum(n > seq_len for n in lengths),
        seq_len=seq_len,
        approximate=tokenizer is None,
        tokenizer=name,
    )


def tokenizer_name(tokenizer: Any | None) -> str:
    """What counted the tokens, for a reader of the estimate or the pre-flight report."""
    if tokenizer is None:
        return APPROX_TOKENIZER
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def dataset_stats(path: str | Path, fmt: str, tokenizer: Any | None, seq_len: int) -> DatasetStats:
    """Read a dataset and measure it: rows, tokens after truncation, and how many rows seq_len cuts."""
    records = load_records(path)
    resolved = resolve_format(records, fmt, source=f"dataset '{Path(path).name}'")
    return measure_records(records, resolved, tokenizer, seq_len)


def load_tokenizer_offline(model_name: str) -> Any | None:
    """The model's tokenizer if it is on this machine (a built local model, a folder, the HF cache), else None."""
    from transformers import AutoTokenizer

    from tools.inputs.model_config import hub_id

    candidates = []
    try:
        from tools.inputs.local_models import resolve_model

        candidates.append(resolve_model(model_name, build=False).path)
    except Exception:  # not built, not a local model, or local models absent: try the next source
        pass
    candidates.append(hub_id(model_name))
    for source in candidates:
        if source.lower().startswith("local:"):
            continue
        try:
            return AutoTokenizer.from_pretrained(source, local_files_only=True, trust_remote_code=False)
        except Exception:  # no cached files or no tokenizer: the estimate falls back to chars/4
            continue
    return None
