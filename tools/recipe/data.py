"""The one dataset reader: records from a .jsonl, .json (a list or {"data": [...]}), .csv or .parquet file.

Pre-flight (through tools/inputs/dataset.py) and the training script read files with these functions
and check rows with the same rules, so a file that passes pre-flight is a file the script can train on.
Every problem is a bad_data RecipeFailure naming the file and the line or row.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

from tools.recipe.exits import EXIT_BAD_DATA, RecipeFailure
from tools.recipe.formatting import FORMATS, IGNORE_INDEX, detect_format, encode_record, to_messages

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
TABLE_SUFFIXES = (".csv", ".parquet")  # read through `datasets` (pandas/pyarrow), not by hand
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "prompt_completion": ("prompt", "completion"),
    "instruction": ("instruction", "output"),
    "messages": ("messages",),
}

Example = tuple[list[int], list[int]]  # token ids and labels (prompt masked with IGNORE_INDEX)


def bad_data(message: str) -> RecipeFailure:
    return RecipeFailure(EXIT_BAD_DATA, "bad_data", message)


def check_suffix(name: str, suffix: str) -> str:
    """The file's type in lower case, or a failure naming the types this reader knows."""
    suffix = suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise bad_data(f"dataset '{name}' has an unsupported type; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    return suffix


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a dataset file (the script's copy of the data; the host opens files through its safe reader)."""
    file = Path(path)
    suffix = check_suffix(str(file), file.suffix)
    if suffix in TABLE_SUFFIXES:
        return read_table(file, suffix)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise bad_data(f"dataset '{file}' cannot be read: {exc.strerror or exc}") from None
    return parse_records(data, suffix, name=str(file))


def parse_records(data: bytes, suffix: str, *, name: str) -> list[dict[str, Any]]:
    """Records of a file's bytes; a table is written to a throwaway file first, since `datasets` reads files."""
    suffix = check_suffix(name, suffix)
    if suffix in TABLE_SUFFIXES:
        with tempfile.TemporaryDirectory(prefix="aegis-data-") as folder:
            file = Path(folder) / f"data{suffix}"
            file.write_bytes(data)
            return read_table(file, suffix, name=name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_data(f"dataset '{name}' is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
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
            raise bad_data(f"dataset '{name}' line {number} is not valid JSON: {reason}") from None
        if not isinstance(value, dict):
            raise bad_data(f"dataset '{name}' line {number} is a JSON {type(value).__name__}, not an object")
        records.append(value)
    return records


def _read_json(text: str, name: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad_data(f"dataset '{name}' is not valid JSON (line {exc.lineno}): {exc.msg}") from None
    except RecursionError:
        raise bad_data(f"dataset '{name}' is not usable JSON: nested too deeply") from None
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]
    if not isinstance(value, list):
        raise bad_data(f"dataset '{name}' must hold a JSON list of records or an object with a 'data' list")
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            raise bad_data(f"dataset '{name}' record {number} is a JSON {type(item).__name__}, not an object")
    return value


def read_table(file: Path, suffix: str, *, name: str | None = None) -> list[dict[str, Any]]:
    """CSV and Parquet through `datasets`, with its cache in a throwaway folder so nothing lingers."""
    import datasets

    kind = suffix.lower().lstrip(".")
    bars_were_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        with tempfile.TemporaryDirectory(prefix="aegis-ds-") as cache:
            table = datasets.load_dataset(kind, data_files=str(file), split="train", cache_dir=cache)
            return table.to_list()
    except MemoryError:
        raise  # out of memory is not bad data: the run's failure class says so
    except Exception as exc:  # pyarrow/pandas parse errors have many types; one message for the person
        text = str(exc).strip().splitlines()
        first = text[0] if text else type(exc).__name__
        raise bad_data(f"dataset '{name or file}' cannot be read as {kind}: {first}") from None
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


def row_problem(record: dict[str, Any], fmt: str) -> str | None:
    """Why a row cannot be read in a format (a missing column, unusable messages), or None."""
    missing = [c for c in REQUIRED_COLUMNS[fmt] if record.get(c) is None]
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
        raise bad_data(f"{source} is empty: it has no records to train on")
    if declared == "auto":
        try:
            fmt = detect_format(records[0])
        except ValueError as exc:
            raise bad_data(f"{source} row 1: {exc}") from None
    elif declared in FORMATS:
        fmt = declared
    else:
        raise bad_data(f"unknown dataset format '{declared}'; use auto or one of {', '.join(FORMATS)}")
    for number, record in enumerate(records, start=1):
        problem = row_problem(record, fmt)
        if problem:
            raise bad_data(f"{source} row {number} {problem}, which format '{fmt}' needs")
    return fmt


def split_heldout(
    records: list[dict[str, Any]], eval_split: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held-out): a seeded shuffle, at least one row each side when a split is asked for and possible."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_eval = round(len(records) * eval_split)
    if eval_split > 0 and len(records) >= 2:
        n_eval = min(max(n_eval, 1), len(records) - 1)
    return [records[i] for i in order[n_eval:]], [records[i] for i in order[:n_eval]]


def encode_examples(tokenizer: Any, records: list[dict[str, Any]], fmt: str, seq_len: int) -> tuple[list[Example], int]:
    """Encode every record; drop rows that lack the format's fields or leave no label within seq_len."""
    examples, dropped = [], 0
    for record in records:
        try:
            ids, labels, _ = encode_record(tokenizer, record, fmt, seq_len)
        except (KeyError, TypeError, ValueError):
            dropped += 1
            continue
        if all(label == IGNORE_INDEX for label in labels[1:]):
            dropped += 1
            continue
        examples.append((ids, labels))
    return examples, dropped
