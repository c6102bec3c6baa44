"""A spec prepared once: its data read, hashed, copied and measured in the model's tokens, in one pass.

Everything downstream (the estimator, pre-flight, the worst case, the optimizer, the renderer, the
attempt, the evals) takes a PreparedSpec instead of reading the dataset or loading the tokenizer again.
The data files are read once through ``open_dataset`` (no link followed, inside the allowed folders,
under the size limit); their bytes are hashed (what an approval binds) and copied into the run folder
(what the attempt trains on), and every row is encoded once with the model's own tokenizer, from which
both the token statistics and the per-row facts pre-flight judges are taken. The sources' identity
(device, inode, size, modification time) is kept so a later change is seen without reading them again.

A folder of files (or a downloaded Hugging Face dataset, which is one) is read file by file the same way;
its copy is one JSON-lines file of its records, and the rows measured are read back from that copy, so
pre-flight measures exactly what the script will read. The spec's seq_len is checked against the model's
positions first: a row cannot be longer than the model can see.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from tools.core.errors import DataError
from tools.core.paths import resolve_dataset_path
from tools.core.spec import TrainingSpec
from tools.inputs.datafile import dataset_files, folder_bytes, read_dataset_bytes, read_dataset_files
from tools.inputs.dataset import (
    APPROX_CHARS_PER_TOKEN,
    DatasetStats,
    approx_token_count,
    join_files,
    parse_records,
    read_snapshot_records,
    resolve_format,
    tokenizer_name,
)
from tools.inputs.hub_data import ensure_dataset
from tools.inputs.model_config import check_seq_len, config_from_dict, load_model_config
from tools.inputs.tokenizer import load_tokenizer
from tools.recipe.formatting import IGNORE_INDEX, encode_record, prompt_text, to_messages

ROWS_KEPT = 5  # row numbers and template errors a check names; the counts are always whole


class SourceIdentity(BaseModel):
    """Which file a path named when it was read: a change of any field means the data may have changed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> SourceIdentity:
        """A file's identity; a folder's is its own, with the total size and newest change of its data files."""
        info = os.lstat(path)
        size, mtime = info.st_size, info.st_mtime_ns
        if path.is_dir():
            files = [os.lstat(file) for _name, file in dataset_files(path)]
            size, mtime = sum(f.st_size for f in files), max([mtime, *(f.st_mtime_ns for f in files)])
        return cls(path=str(path), device=info.st_dev, inode=info.st_ino, size=size, mtime_ns=mtime)

    def change(self) -> str | None:
        """What changed since it was read, in words; None when the same file is still there."""
        try:
            now = SourceIdentity.of(Path(self.path))
        except Exception:  # gone, unreadable, or a folder that lost its data files
            return f"'{self.path}' is gone"
        if (now.device, now.inode) != (self.device, self.inode):
            return f"'{self.path}' was replaced by another file"
        if now.size != self.size:
            return f"'{self.path}' changed size ({self.size:,} → {now.size:,} bytes)"
        if now.mtime_ns != self.mtime_ns:
            return f"'{self.path}' was modified"
        return None


class RowFacts(BaseModel):
    """What pre-flight needs of every row, measured once: its verdicts hold for this spec's seq_len only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    rows: int
    format: str
    truncated_rows: int = 0
    no_target_rows: int = 0
    no_target_named: list[int] = Field(default_factory=list)
    longest_masked_prompt: int = 0
    template_errors: int = 0
    template_errors_named: list[str] = Field(default_factory=list)
    first_row: str | None = Field(default=None, description="Row 1 as the model sees it; None for plain text.")
    first_row_error: str | None = None
    exact: bool = Field(description="Counted with the model's tokenizer; chars/4 otherwise.")
    chat_template: bool = False


class PreparedData(BaseModel):
    """The data of one spec: digest, copies, sources' identity, statistics and per-row facts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    digest: str
    train_copy: str
    eval_copy: str | None = None
    train_source: SourceIdentity
    eval_source: SourceIdentity | None = None
    stats: DatasetStats
    train_rows: RowFacts
    eval_rows: RowFacts | None = None

    def change(self) -> str | None:
        """What changed in the sources since they were read, or None."""
        for source in (self.train_source, self.eval_source):
            if source is not None and (what := source.change()):
                return what
        return None


class PreparedSpec(BaseModel):
    """A spec with everything read about it: built once, passed down, never re-read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: TrainingSpec
    spec_hash: str
    data: PreparedData
    config_values: dict[str, Any] = Field(
        default_factory=dict,
        description="The model's config as read (the model's facts), as data; empty in a "
        "record written before it was kept, which re-pricing prepares again.",
    )

    def config(self) -> Any:
        """The model's transformers config, rebuilt from what was read: nothing is read again."""
        return config_from_dict(self.config_values, source=self.spec.model_name)


class _Loaded(NamedTuple):
    """One dataset as read: the bytes its digest covers, its identity, and its copy's bytes and type."""

    data: bytes
    source: SourceIdentity
    copy: bytes
    suffix: str


def prepare(spec: TrainingSpec, folder: Path) -> PreparedSpec:
    """Read, hash, copy and measure the spec's data once; the copies go under ``folder``.

    Kept per (sources unchanged, model, tokenizer, seq_len, format, folder): a spec that changes only where it
    runs or how it trains (a GPU, a method, a batch) is not read or tokenized again.
    """
    config = load_model_config(spec.model_name, trust_remote_code=spec.trust_remote_code)
    check_seq_len(spec.model_name, spec.seq_len, config)
    key = _cache_key(spec, folder)
    kept = _PREPARED.get(key) if key is not None else None
    if kept is not None and Path(kept.data.train_copy).is_file():
        return PreparedSpec(spec=spec, spec_hash=spec.spec_hash(), data=kept.data, config_values=kept.config_values)
    prepared = _prepare(spec, folder, config)
    if key is not None:
        _PREPARED[key] = prepared
    return prepared


def _cache_key(spec: TrainingSpec, folder: Path) -> tuple[Any, ...] | None:
    """What the data's facts depend on; None when a source cannot be named without reading it (a Hub id)."""
    try:
        sources = tuple(
            SourceIdentity.of(resolve_dataset_path(path)) if path else None
            for path in (spec.dataset_path, spec.eval_dataset_path)
        )
    except Exception:  # not on this machine yet: _load fetches or names it
        return None
    return (sources, spec.model_name, spec.trust_remote_code, spec.seq_len, spec.dataset_format, str(folder))


def _prepare(spec: TrainingSpec, folder: Path, config: Any) -> PreparedSpec:
    train = _load(spec.dataset_path)
    evals = _load(spec.eval_dataset_path) if spec.eval_dataset_path else None
    digest = hashlib.sha256(b"[0]" + train.data + b"[1]" + (evals.data if evals else b"")).hexdigest()
    copies = folder / digest[:16]
    train_copy = _copy(train.copy, copies / f"train{train.suffix}")
    eval_copy = _copy(evals.copy, copies / f"eval{evals.suffix}") if evals is not None else None
    tokenizer = load_tokenizer(spec.model_name)
    train_records = _parse(train.copy, train_copy, spec.dataset_path)
    fmt = resolve_format(train_records, spec.dataset_format, source=f"dataset '{Path(spec.dataset_path).name}'")
    lengths, train_facts = measure_rows(train_records, fmt, tokenizer, spec.seq_len, source="training data")
    eval_facts = None
    if evals is not None and eval_copy is not None and spec.eval_dataset_path:
        eval_records = _parse(evals.copy, eval_copy, spec.eval_dataset_path)
        eval_fmt = resolve_format(eval_records, spec.dataset_format, source="eval data")
        _, eval_facts = measure_rows(eval_records, eval_fmt, tokenizer, spec.seq_len, source="eval data")
    _RECORDS[digest] = train_records
    kept = [min(n, spec.seq_len) for n in lengths]
    stats = DatasetStats(
        rows=len(train_records),
        format=fmt,
        tokens=sum(kept),
        mean_tokens_per_row=sum(kept) / len(kept),
        max_tokens_per_row=max(lengths),
        truncated_rows=sum(n > spec.seq_len for n in lengths),
        seq_len=spec.seq_len,
        approximate=tokenizer is None,
        tokenizer=tokenizer_name(tokenizer),
    )
    data = PreparedData(
        digest=digest,
        train_copy=str(train_copy),
        eval_copy=str(eval_copy) if eval_copy else None,
        train_source=train.source,
        eval_source=evals.source if evals else None,
        stats=stats,
        train_rows=train_facts,
        eval_rows=eval_facts,
    )
    return PreparedSpec(spec=spec, spec_hash=spec.spec_hash(), data=data, config_values=config.to_dict())


def training_records(data: PreparedData) -> list[dict[str, Any]]:
    """The training rows: from memory in the process that prepared them, else from the run's copy."""
    records = _RECORDS.get(data.digest)
    return records if records is not None else read_snapshot_records(Path(data.train_copy))


def measure_rows(
    records: list[dict[str, Any]], fmt: str, tokenizer: Any | None, seq_len: int, *, source: str
) -> tuple[list[int], RowFacts]:
    """Encode every row once: its full length, and whether a target token survives masking and truncation.

    Exact with the model's tokenizer; without it, lengths are chars/4 estimates and say so.
    """
    lengths: list[int] = []
    no_target: list[int] = []
    errors: list[str] = []
    longest_prompt = 0
    for number, record in enumerate(records, start=1):
        try:
            total, prompt = _row_tokens(record, fmt, tokenizer)
        except Exception as exc:  # a chat template raises its own errors (roles out of order, unknown role)
            errors.append(f"row {number}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            lengths.append(1)
            continue
        lengths.append(total)
        exact_loss = tokenizer is not None and prompt >= min(seq_len, total)
        estimated_loss = tokenizer is None and (prompt >= seq_len - 1 or total < 2)
        if exact_loss or estimated_loss:
            no_target.append(number)
            longest_prompt = max(longest_prompt, prompt)
    first, first_error = _first_row(records[0], fmt, tokenizer)
    facts = RowFacts(
        source=source,
        rows=len(records),
        format=fmt,
        truncated_rows=sum(n > seq_len for n in lengths),
        no_target_rows=len(no_target),
        no_target_named=no_target[:ROWS_KEPT],
        longest_masked_prompt=longest_prompt,
        template_errors=len(errors),
        template_errors_named=errors[:ROWS_KEPT],
        first_row=first,
        first_row_error=first_error,
        exact=tokenizer is not None,
        chat_template=bool(tokenizer is not None and getattr(tokenizer, "chat_template", None)),
    )
    return lengths, facts


def _row_tokens(record: dict[str, Any], fmt: str, tokenizer: Any | None) -> tuple[int, int]:
    """(tokens of the whole row, masked prompt tokens before the first target token)."""
    if tokenizer is None:
        split = to_messages(record, fmt)
        prompt = 0 if split is None else math.ceil(len(prompt_text(None, split[0])) / APPROX_CHARS_PER_TOKEN)
        return approx_token_count(record, fmt), prompt
    ids, labels, _ = encode_record(tokenizer, record, fmt, 1 << 62)
    masked = next((i for i, label in enumerate(labels) if i > 0 and label != IGNORE_INDEX), len(labels))
    return len(ids), masked


def _first_row(record: dict[str, Any], fmt: str, tokenizer: Any | None) -> tuple[str | None, str | None]:
    split = to_messages(record, fmt)
    if split is None:
        return None, None
    try:
        return prompt_text(tokenizer, split[0]) + split[1].strip(), None
    except Exception as exc:  # the check names it as row 1's failure
        return None, str(exc)


def _load(path: str) -> _Loaded:
    """Read a dataset once: a file's bytes as they are; a folder's files, joined into one JSON-lines copy."""
    ensure_dataset(path)
    resolved = resolve_dataset_path(path)
    before = SourceIdentity.of(resolved)
    if resolved.is_dir():
        files = read_dataset_files(path)
        data = folder_bytes(files)
        records = join_files(
            [(name, parse_records(raw, Path(name).suffix, name=name)) for name, raw in files], name=path
        )
        copy = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records).encode("utf-8")
        size, suffix = sum(len(raw) for _name, raw in files), ".jsonl"
    else:
        data = read_dataset_bytes(path)
        copy, size, suffix = data, len(data), resolved.suffix.lower()
    after = SourceIdentity.of(resolved)
    if after != before or size != after.size:
        raise DataError(f"dataset '{path}' changed while it was being read; try again once nothing writes to it")
    return _Loaded(data, after, copy, suffix)


def _copy(data: bytes, path: Path) -> Path:
    if not path.is_file() or path.stat().st_size != len(data):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_bytes(data)
        os.replace(partial, path)
    return path


def _parse(data: bytes, copy: Path, original: str) -> list[dict[str, Any]]:
    suffix = copy.suffix.lower()
    if suffix in (".csv", ".parquet"):
        records = read_snapshot_records(copy)
    else:
        records = parse_records(data, suffix, name=str(resolve_dataset_path(original)))
    if not records:
        raise DataError(f"dataset '{original}' is empty: it has no records to train on")
    return records


_RECORDS: dict[str, list[dict[str, Any]]] = {}
_PREPARED: dict[tuple[Any, ...], PreparedSpec] = {}
