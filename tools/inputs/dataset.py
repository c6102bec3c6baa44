"""Read a dataset (a file, a folder of files, a Hugging Face dataset id) into records and measure it in tokens.

Parsing and the row rules are tools/recipe/data.py, the reader the training script runs, so data
that passes here is data the script can train on; this module adds the safe opening and the size limit
(tools/inputs/datafile.py), the download of a hub dataset (tools/inputs/hub_data.py) and turns the
recipe's failures into DataErrors. The estimator's token
counts use the same ``encode_record`` the script runs, so "tokens" means what the model will really
see (prompt template, eos, truncation included). Every problem is a DataError naming the file and
the line or row, never a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.core.errors import DataError
from tools.core.paths import resolve_dataset_path
from tools.inputs.datafile import open_dataset, read_dataset_files
from tools.inputs.hub_data import ensure_dataset
from tools.recipe import data as recipe_data
from tools.recipe.exits import RecipeFailure
from tools.recipe.formatting import encode_record, prompt_text, to_messages

# Without the model's tokenizer, English text averages about 4 characters per BPE token.
APPROX_CHARS_PER_TOKEN = 4
APPROX_TOKENIZER = "approx:chars/4"


@contextmanager
def _as_data_error() -> Iterator[None]:
    """The recipe's bad-data failure, as the DataError the host shows to the person (same words)."""
    try:
        yield
    except RecipeFailure as exc:
        raise DataError(str(exc)) from None


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
    """Records of a dataset inside the allowed folders: a .jsonl, .json (a list or {"data": [...]}), .csv or
    .parquet file, a folder of such files, or a Hugging Face dataset id (downloaded where the hub answers)."""
    ensure_dataset(str(path))
    file = resolve_dataset_path(path)
    with _as_data_error():
        if file.is_dir():
            records = join_files(
                [(name, _parse_file(data, name)) for name, data in read_dataset_files(path)], name=str(file)
            )
        else:
            suffix = recipe_data.check_suffix(file.name, file.suffix)
            if suffix in recipe_data.TABLE_SUFFIXES:
                with open_dataset(path) as (_fd, real, _size):  # the size limit and the link check, before reading
                    records = recipe_data.read_table(real, suffix)
            else:
                records = recipe_data.parse_records(read_dataset_files(path)[0][1], suffix, name=str(file))
    if not records:
        raise DataError(f"dataset '{file}' is empty: it has no records to train on")
    return records


def _parse_file(data: bytes, name: str) -> list[dict[str, Any]]:
    return recipe_data.parse_records(data, Path(name).suffix, name=name)


def join_files(parts: list[tuple[str, list[dict[str, Any]]]], *, name: str) -> list[dict[str, Any]]:
    """A folder's records from its files' records, in order: one format, or the mix is named."""
    with _as_data_error():
        return recipe_data.join_files(parts, name=name)


def read_snapshot_records(file: Path) -> list[dict[str, Any]]:
    """Records of a snapshot Aegis copied into a run folder (the data an attempt trained on)."""
    with _as_data_error():
        return recipe_data.read_records(file)


def parse_records(data: bytes, suffix: str, *, name: str) -> list[dict[str, Any]]:
    """Records of a file's bytes, read by the recipe's reader."""
    with _as_data_error():
        return recipe_data.parse_records(data, suffix, name=name)


def resolve_format(records: list[dict[str, Any]], declared: str, *, source: str = "dataset") -> str:
    """The format every row is in: 'auto' reads the first row; a row that does not fit is named."""
    with _as_data_error():
        return recipe_data.resolve_format(records, declared, source=source)


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
