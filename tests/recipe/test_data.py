"""The one dataset reader: the script reads a file exactly as pre-flight does, {"data": [...]} included."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from tools.core.errors import DataError
from tools.inputs.dataset import load_records
from tools.recipe.data import encode_examples, parse_records, read_records, resolve_format, split_heldout
from tools.recipe.exits import EXIT_BAD_DATA, RecipeFailure

ROWS = [
    {"prompt": "say hi", "completion": "hi there"},
    {"prompt": "say bye", "completion": "bye"},
    {"prompt": "count", "completion": "1 2 3"},
]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AEGIS_DATA_DIRS", str(tmp_path))
    return tmp_path


def _write(folder: Path, name: str) -> Path:
    path = folder / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    elif name == "object.json":
        path.write_text(json.dumps({"data": ROWS}), encoding="utf-8")
    elif name.endswith(".json"):
        path.write_text(json.dumps(ROWS), encoding="utf-8")
    elif name.endswith(".csv"):
        path.write_text("prompt,completion\n" + "".join(f'"{r["prompt"]}","{r["completion"]}"\n' for r in ROWS))
    else:
        datasets.Dataset.from_list(ROWS).to_parquet(str(path))
    return path


@pytest.mark.parametrize("name", ["rows.jsonl", "list.json", "object.json", "rows.csv", "rows.parquet"])
def test_host_and_script_read_the_same_records(data_dir: Path, name: str) -> None:
    path = _write(data_dir, name)
    script = read_records(path)
    assert script == load_records(path) == ROWS
    assert parse_records(path.read_bytes(), path.suffix, name=name) == ROWS
    assert resolve_format(script, "auto") == "prompt_completion"


def test_a_data_object_json_file_trains_in_the_script(data_dir: Path) -> None:
    """The file that used to pass pre-flight and then fail in datasets.load_dataset."""

    class Words:
        eos_token_id = 0
        chat_template = None

        def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
            return {"input_ids": [len(word) for word in text.split()]}

    records = read_records(_write(data_dir, "object.json"))
    examples, dropped = encode_examples(Words(), records, resolve_format(records, "auto"), seq_len=64)
    assert len(examples) == 3 and dropped == 0


def test_problems_are_bad_data_on_the_script_side_and_data_errors_on_the_host(data_dir: Path) -> None:
    path = data_dir / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(RecipeFailure, match=r"bad\.jsonl' line 2 is not valid JSON") as caught:
        read_records(path)
    assert caught.value.code == EXIT_BAD_DATA and caught.value.reason == "bad_data"
    with pytest.raises(DataError, match=r"bad\.jsonl' line 2 is not valid JSON"):
        load_records(path)
    with pytest.raises(RecipeFailure, match="unsupported type"):
        read_records(data_dir / "notes.txt")
    with pytest.raises(RecipeFailure, match="row 2 lacks 'completion'"):
        resolve_format([ROWS[0], {"prompt": "only"}], "auto", source="dataset")


def test_heldout_split_is_seeded_and_leaves_both_sides_a_row() -> None:
    records = [{"text": str(i)} for i in range(10)]
    train, held = split_heldout(records, 0.2, seed=7)
    assert (train, held) == split_heldout(records, 0.2, seed=7)
    assert len(held) == 2 and sorted(train + held, key=lambda r: int(r["text"])) == records
    assert [len(side) for side in split_heldout(records[:2], 0.01, seed=1)] == [1, 1]
    assert split_heldout(records, 0.0, seed=1)[1] == []
