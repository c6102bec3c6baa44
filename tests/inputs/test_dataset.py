"""Dataset reading and token statistics: every file type and format, and every bad-data error names its place."""

from __future__ import annotations

import json
import math
from pathlib import Path

import datasets
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tools.core.errors import DataError
from tools.inputs.dataset import (
    approx_token_count,
    dataset_stats,
    load_records,
    measure_records,
    parse_records,
    resolve_format,
)
from tools.inputs.tokenizer import load_tokenizer_offline
from tools.recipe.formatting import encode_record

ROWS = {
    "text": [{"text": "the cat sat on the mat"}, {"text": "a dog ran in the park today"}],
    "prompt_completion": [{"prompt": "say hi", "completion": "hi there"}, {"prompt": "say bye", "completion": "bye"}],
    "instruction": [
        {"instruction": "add", "input": "2 and 2", "output": "4"},
        {"instruction": "name a colour", "input": "", "output": "red"},
    ],
    "messages": [
        {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi, how can I help"}]},
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": "y"},
            ]
        },
    ],
}


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AEGIS_DATA_DIRS", str(tmp_path))
    return tmp_path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def word_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A real (tiny) word-level tokenizer, built in memory: exact counts without any download."""
    vocab = {"[UNK]": 0, "</s>": 1, **{w: i + 2 for i, w in enumerate(sorted(set(words)))}}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", eos_token="</s>")


@pytest.mark.parametrize("fmt", list(ROWS))
def test_jsonl_every_format_detected(data_dir: Path, fmt: str) -> None:
    path = write_jsonl(data_dir / f"{fmt}.jsonl", ROWS[fmt])
    records = load_records(path)
    assert records == ROWS[fmt]
    assert resolve_format(records, "auto") == fmt
    assert resolve_format(records, fmt) == fmt


def test_json_list_and_data_object(data_dir: Path) -> None:
    (data_dir / "list.json").write_text(json.dumps(ROWS["prompt_completion"]), encoding="utf-8")
    (data_dir / "obj.json").write_text(json.dumps({"data": ROWS["instruction"]}), encoding="utf-8")
    assert load_records(data_dir / "list.json") == ROWS["prompt_completion"]
    assert load_records(data_dir / "obj.json") == ROWS["instruction"]


def test_csv_and_parquet(data_dir: Path) -> None:
    (data_dir / "d.csv").write_text('prompt,completion\n"say hi","hi there"\n"say bye",bye\n', encoding="utf-8")
    assert load_records(data_dir / "d.csv") == ROWS["prompt_completion"]
    datasets.Dataset.from_list(ROWS["instruction"]).to_parquet(str(data_dir / "d.parquet"))
    records = load_records(data_dir / "d.parquet")
    assert records == ROWS["instruction"]
    assert resolve_format(records, "auto") == "instruction"


def test_empty_files(data_dir: Path) -> None:
    (data_dir / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    (data_dir / "empty.json").write_text("[]", encoding="utf-8")
    for name in ("empty.jsonl", "empty.json"):
        with pytest.raises(DataError, match="is empty"):
            load_records(data_dir / name)


def test_malformed_json_line_is_named(data_dir: Path) -> None:
    path = data_dir / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"text": "fine"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl' line 3 is not valid JSON"):
        load_records(path)
    path.write_text('{"text": "ok"}\n["a list"]\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2 is a JSON list, not an object"):
        load_records(path)


def test_json_of_wrong_shape(data_dir: Path) -> None:
    (data_dir / "object.json").write_text('{"items": [{"text": "a"}]}', encoding="utf-8")
    with pytest.raises(DataError, match=r"JSON object without a list of records under any of 'data', 'train'"):
        load_records(data_dir / "object.json")
    (data_dir / "scalar.json").write_text("3", encoding="utf-8")
    with pytest.raises(DataError, match="must hold a JSON list"):
        load_records(data_dir / "scalar.json")
    (data_dir / "broken.json").write_text('[{"text": 1},', encoding="utf-8")
    with pytest.raises(DataError, match="is not valid JSON"):
        load_records(data_dir / "broken.json")


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_no_text_column_names_the_columns(data_dir: Path, suffix: str) -> None:
    path = data_dir / f"cols.{suffix}"
    if suffix == "csv":
        path.write_text("question,answer\nq,a\n", encoding="utf-8")
    else:
        write_jsonl(path, [{"question": "q", "answer": "a"}])
    with pytest.raises(DataError, match=r"row 1: no usable text column \(found \['answer', 'question'\]\)"):
        dataset_stats(path, "auto", None, 64)


def test_first_bad_row_is_named(data_dir: Path) -> None:
    rows = [*ROWS["prompt_completion"], {"prompt": "only a prompt"}]
    with pytest.raises(DataError, match=r"row 3 lacks 'completion' \(found \['prompt'\]\)"):
        resolve_format(rows, "auto")
    no_reply = [{"messages": [{"role": "user", "content": "hello"}]}]
    with pytest.raises(DataError, match="row 1 has unusable 'messages'.*no assistant turn"):
        resolve_format(no_reply, "messages")
    with pytest.raises(DataError, match="unknown dataset format"):
        resolve_format(ROWS["text"], "chatml")


def test_unsupported_type_and_outside_folder(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    (data_dir / "d.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(DataError, match="unsupported type"):
        load_records(data_dir / "d.txt")
    outside = write_jsonl(tmp_path_factory.mktemp("elsewhere") / "d.jsonl", ROWS["text"])
    with pytest.raises(DataError, match="outside the allowed data folders"):
        load_records(outside)


def test_approximate_stats_without_tokenizer(data_dir: Path) -> None:
    rows = [{"text": "a" * 40}, {"text": "b" * 200}]
    path = write_jsonl(data_dir / "t.jsonl", rows)
    stats = dataset_stats(path, "auto", None, seq_len=32)
    # ceil(chars / 4) + 1 eos: 11 and 51, the second cut to 32
    assert (stats.rows, stats.tokens, stats.max_tokens_per_row, stats.truncated_rows) == (2, 43, 51, 1)
    assert stats.approximate and stats.tokenizer == "approx:chars/4"
    assert stats.mean_tokens_per_row == pytest.approx(21.5)
    pc = ROWS["prompt_completion"][0]
    expected = math.ceil(len("### Instruction:\nsay hi\n\n### Response:\n" + "hi there") / 4) + 1
    assert approx_token_count(pc, "prompt_completion") == expected


def test_exact_stats_with_a_tokenizer_match_encode_record() -> None:
    records = ROWS["text"] + [{"text": " ".join(["cat"] * 50)}]
    words = " ".join(r["text"] for r in records).split()
    tokenizer = word_tokenizer(words)
    stats = measure_records(records, "text", tokenizer, seq_len=16)
    expected = [len(encode_record(tokenizer, r, "text", 16)[0]) for r in records]
    assert expected == [7, 8, 16]  # words + eos, the last truncated
    assert stats.tokens == sum(expected) and stats.truncated_rows == 1 and stats.max_tokens_per_row == 51
    assert not stats.approximate


def test_load_tokenizer_offline(tmp_path: Path) -> None:
    assert load_tokenizer_offline("nobody/no-such-model-xyz") is None
    folder = tmp_path / "tok"
    word_tokenizer(["hello", "world"]).save_pretrained(str(folder))
    loaded = load_tokenizer_offline(str(folder))
    assert loaded is not None
    assert loaded("hello world", add_special_tokens=False)["input_ids"] == [2, 3]


def test_parse_records_reads_every_type_from_bytes() -> None:
    csv = b'prompt,completion\n"say hi","hi there"\n"say bye",bye\n'
    assert parse_records(csv, ".csv", name="d.csv") == ROWS["prompt_completion"]
    wrapped = json.dumps({"data": ROWS["text"]}).encode()
    assert parse_records(wrapped, ".json", name="d.json") == ROWS["text"]
    with pytest.raises(DataError, match=r"dataset 'd\.json' is not UTF-8 text"):
        parse_records(b"\xff\xfe", ".json", name="d.json")
