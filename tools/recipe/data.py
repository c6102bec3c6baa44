"""The one dataset reader: records from a file or a folder of files, in every format Aegis trains on.

Files: .jsonl (one object per line), .json (a list of objects, or an object holding that list under one of
the keys in JSON_RECORD_KEYS, e.g. {"data": [...]}), .csv and .parquet. A folder: every such file in it and
its subfolders (hidden ones skipped), in name order, all in one format. Rows: plain 'text',
'prompt'/'completion', alpaca 'instruction'/'input'/'output', chat 'messages' (role/content) or ShareGPT
'conversations' (from/value; human → user, gpt → assistant).

Pre-flight, the estimator and the evals (through tools/inputs/dataset.py) and the training script read
data with these functions and check rows with the same rules, so a file that passes pre-flight is a file
the script can train on. Every problem is a bad_data RecipeFailure naming the file and the line or row.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

from tools.recipe.exits import EXIT_BAD_DATA, RecipeFailure
from tools.recipe.formatting import FORMATS, IGNORE_INDEX, chat_turns, detect_format, encode_record, to_messages

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
TABLE_SUFFIXES = (".csv", ".parquet")  # read through `datasets` (pandas/pyarrow), not by hand
# A .json file that is an object holds its records under the first of these keys that is a list.
JSON_RECORD_KEYS = ("data", "train", "examples", "records", "rows", "instances")
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "prompt_completion": ("prompt", "completion"),
    "instruction": ("instruction", "output"),
    "messages": (),  # 'messages' or 'conversations': checked by row_problem
}

Example = tuple[list[int], list[int]]  # token ids and labels (prompt masked with IGNORE_INDEX)


def bad_data(message: str) -> RecipeFailure:
    return RecipeFailure(EXIT_BAD_DATA, "bad_data", message)


def check_suffix(name: str, suffix: str) -> str:
    """The file's type in lower case, or a failure naming the types this reader knows."""
    suffix = suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise bad_data(
            f"dataset '{name}' has an unsupported type; use one of {', '.join(SUPPORTED_SUFFIXES)}, "
            "or a folder of such files"
        )
    return suffix


def folder_files(folder: Path) -> list[Path]:
    """The data files of a folder and its subfolders, in name order; hidden files and folders are skipped."""
    found = []
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        if path.suffix.lower() in SUPPORTED_SUFFIXES and not any(p.startswith(".") for p in parts) and path.is_file():
            found.append(path)
    if not found:
        raise bad_data(f"dataset folder '{folder}' holds no {', '.join(SUPPORTED_SUFFIXES)} file")
    return found


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a dataset file or folder (the script's copy of the data; the host opens files safely first)."""
    file = Path(path)
    if file.is_dir():
        return join_files([(str(f.relative_to(file)), _read_file(f)) for f in folder_files(file)], name=str(file))
    return _read_file(file)


def _read_file(file: Path) -> list[dict[str, Any]]:
    suffix = check_suffix(str(file), file.suffix)
    if suffix in TABLE_SUFFIXES:
        return read_table(file, suffix)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise bad_data(f"dataset '{file}' cannot be read: {exc.strerror or exc}") from None
    return parse_records(data, suffix, name=str(file))


def join_files(parts: list[tuple[str, list[dict[str, Any]]]], *, name: str) -> list[dict[str, Any]]:
    """The records of a folder's files, in order; the files must share one format, or the mix is named."""
    formats: dict[str, str] = {}
    for file, records in parts:
        if records:
            formats[file] = resolve_format(records, "auto", source=f"dataset '{name}' file '{file}'")
    if len(set(formats.values())) > 1:
        mix = ", ".join(f"'{file}' is {fmt}" for file, fmt in formats.items())
        raise bad_data(f"dataset folder '{name}' mixes formats ({mix}); keep one format per folder")
    return [record for _file, records in parts for record in records]


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
    if isinstance(value, dict):
        key = next((k for k in JSON_RECORD_KEYS if isinstance(value.get(k), list)), None)
        if key is None:
            keys = ", ".join(repr(k) for k in JSON_RECORD_KEYS)
            raise bad_data(
                f"dataset '{name}' is a JSON object without a list of records under any of {keys} "
                f"(found {sorted(value)[:8]})"
            )
        value = value[key]
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
        if chat_turns(record) is None:
            return f"has no 'messages' or 'conversations' list (found {sorted(record)})"
        key = "messages" if isinstance(record.get("messages"), list) else "conversations"
        try:
            to_messages(record, fmt)
        except (KeyError, TypeError, ValueError) as exc:
            return f"has unusable '{key}' ({str(exc).strip(chr(39))})"
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
