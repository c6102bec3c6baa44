"""The bundled data: reproducible from its script, the right shape, and the support demo's format regular."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from scripts import make_datasets
from tools.core.paths import BUNDLED_DATA_DIR, resolve_dataset_path
from tools.core.spec import load_spec
from tools.recipe.formatting import detect_format

FILES = {"sample.jsonl": "instruction", "text.jsonl": "text", "support_train.jsonl": "messages"}
FILES["support_eval.jsonl"] = "messages"
TICKET = re.compile(r"^Ticket NW-(\d{4}): \S.{2,60}$")
SECRETISH = re.compile(
    r"canary|(?:password|passwd|secret|token|api[_ -]?key)\s*[:=]\s*\S|sk-[A-Za-z0-9]{8}|AKIA[0-9A-Z]{12}|BEGIN [A-Z ]*KEY",
    re.I,
)


def _rows(name: str) -> list[dict]:
    lines = (BUNDLED_DATA_DIR / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _answer_lines(row: dict) -> list[str]:
    return row["messages"][-1]["content"].split("\n")


def _user(row: dict) -> str:
    return next(m["content"] for m in row["messages"] if m["role"] == "user")


def test_committed_files_are_what_the_generator_writes(tmp_path):
    make_datasets.main(["--out", str(tmp_path)])
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (BUNDLED_DATA_DIR / name).read_bytes(), (
            f"{name} is stale: run python -m scripts.make_datasets"
        )


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("sample.jsonl", 300, 400),
        ("text.jsonl", 150, 400),
        ("support_train.jsonl", 100, 140),
        ("support_eval.jsonl", 15, 30),
    ],
)
def test_row_counts(name, low, high):
    assert low <= len(_rows(name)) <= high


@pytest.mark.parametrize(("name", "fmt"), FILES.items())
def test_columns_and_format(name, fmt):
    rows = _rows(name)
    assert {detect_format(row) for row in rows} == {fmt}
    for row in rows:
        if fmt == "instruction":
            assert set(row) == {"instruction", "input", "output"}
            assert row["instruction"].strip() and row["output"].strip() and isinstance(row["input"], str)
        elif fmt == "text":
            assert set(row) == {"text"} and len(row["text"].split()) >= 8
        else:
            roles = [m["role"] for m in row["messages"]]
            assert roles in (["user", "assistant"], ["system", "user", "assistant"])
            assert all(m["content"].strip() for m in row["messages"])
    texts = [json.dumps(row, sort_keys=True) for row in rows]
    assert len(set(texts)) == len(texts), "no duplicate rows"


def test_sample_is_varied_and_short_enough_for_the_fast_path():
    rows = _rows("sample.jsonl")
    words = [len(r["output"].split()) for r in rows]
    assert max(words) < 120 and min(words) <= 2
    assert sum(w >= 25 for w in words) >= 40, "some outputs are several sentences"
    assert sum(w <= 8 for w in words) >= 60, "some outputs are one line"
    assert sum(bool(r["input"]) for r in rows) >= 100
    assert sum(len((r["instruction"] + r["input"] + r["output"]).split()) for r in rows) < 40_000
    kinds = Counter(r["instruction"].split()[0] for r in rows)
    assert len(kinds) >= 12, kinds
    assert any(r["output"] == "The capital of France is Paris." for r in rows)


@pytest.mark.parametrize("name", ["support_train.jsonl", "support_eval.jsonl"])
def test_support_answers_follow_the_house_format(name):
    for row in _rows(name):
        lines = _answer_lines(row)
        assert TICKET.match(lines[0]), lines[0]
        assert lines[1] == "Fix:"
        steps = lines[2:-1]
        assert 1 <= len(steps) <= 3
        assert [s.split(". ", 1)[0] for s in steps] == [str(i) for i in range(1, len(steps) + 1)]
        assert lines[-1] == make_datasets.SIGNOFF == "— Northwind Support"
        assert 40 <= len(" ".join(m["content"] for m in row["messages"]).split()) <= 110


def test_support_eval_is_held_out_from_training():
    train, held_out = _rows("support_train.jsonl"), _rows("support_eval.jsonl")
    assert not {_user(r) for r in train} & {_user(r) for r in held_out}, "no shared problem text"
    tickets = [TICKET.match(_answer_lines(r)[0]).group(1) for r in train + held_out]
    assert len(set(tickets)) == len(tickets), "every ticket number is unique"
    titles = {
        split: {_answer_lines(r)[0].split(": ", 1)[1] for r in rows}
        for split, rows in (("train", train), ("eval", held_out))
    }
    assert not titles["train"] & titles["eval"], "eval problems never appear in training"
    assert len(titles["train"]) == 30 and len(titles["eval"]) == 6
    assert sum(len(r["messages"]) == 3 for r in train) >= 30, "some rows carry a system message"


def test_no_row_holds_a_secret():
    for name in FILES:
        text = (BUNDLED_DATA_DIR / name).read_text(encoding="utf-8")
        assert not SECRETISH.search(text), f"{name}: {SECRETISH.search(text).group(0)!r}"


@pytest.mark.parametrize("spec_file", ["sample_lora.yaml", "support_smollm2.yaml", "llama2_a10g.yaml"])
def test_example_specs_are_valid_and_point_at_bundled_data(spec_file):
    path = BUNDLED_DATA_DIR / "specs" / spec_file
    spec = load_spec(path)
    assert path.read_text(encoding="utf-8").splitlines()[1].startswith("# Run: aegis ")
    assert resolve_dataset_path(spec.dataset_path).parent == BUNDLED_DATA_DIR
    if spec.eval_dataset_path:
        assert resolve_dataset_path(spec.eval_dataset_path).name == "support_eval.jsonl"
    expected = {
        "sample_lora.yaml": ("local:tiny-llama", "lora", "cpu", 2, 4, 128),
        "support_smollm2.yaml": ("local:smollm2-135m-instruct", "lora", "cpu", 2, 2, 256),
        "llama2_a10g.yaml": ("meta-llama/Llama-2-7b-hf", "qlora", "a10g", 3, 4, 512),
    }[spec_file]
    assert (
        spec.model_name,
        spec.method,
        spec.target_gpu,
        spec.num_epochs,
        spec.micro_batch_size,
        spec.seq_len,
    ) == expected
