"""Issue 17: one dataset reader for pre-flight, the estimator, the training script and the evals.

A ShareGPT file, a ``{"data": [...]}`` file and a folder of files each train (two CPU steps) on the copy
pre-flight read, through the very reader pre-flight used; a hub dataset id works from its downloaded
folder and is one clear line where the hub cannot be reached; a tokenizer that yields no tokens is an
error, never an exact count of zero.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from agent.intake import build_spec
from tools.core.errors import DataError
from tools.core.paths import hub_dataset_folder
from tools.core.spec import BudgetPolicy, parse_spec
from tools.evals.examples import read_records as eval_reader
from tools.inputs import hub_data
from tools.inputs.dataset import load_records
from tools.inputs.prepared import prepare
from tools.inputs.tokenizer import load_tokenizer
from tools.job.pipeline import run_pipeline
from tools.job.state import new_job
from tools.recipe import data as script_reader
from tools.recipe.formatting import to_messages

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = [("Where is my invoice?", "In Billing."), ("How do I reset it?", "Hold the button."), ("Hi?", "Hello!")]


def sharegpt(path: Path) -> Path:
    rows = [
        {
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": "human", "value": q},
                {"from": "gpt", "value": a},
            ]
        }
        for q, a in QUESTIONS * 4
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def data_object(path: Path) -> Path:
    rows = [{"instruction": q, "input": "", "output": a} for q, a in QUESTIONS * 4]
    path.write_text(json.dumps({"version": 2, "data": rows}))
    return path


def folder(path: Path) -> Path:
    (path / "part-b").mkdir(parents=True)
    rows = [{"prompt": q, "completion": a} for q, a in QUESTIONS * 2]
    (path / "part-a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "part-b" / "more.json").write_text(json.dumps(rows))
    (path / ".hidden.jsonl").write_text("not json at all\n")
    (path / "README.md").write_text("ignored")
    return path


MAKERS = {"sharegpt.jsonl": sharegpt, "object.json": data_object, "folder": folder}


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AEGIS_DATA_DIRS", str(tmp_path))
    return tmp_path


def _spec(path: Path, **overrides) -> dict:
    return {
        "model_name": "local:tiny-llama",
        "dataset_path": str(path),
        "method": "lora",
        "micro_batch_size": 2,
        "seq_len": 64,
        "learning_rate": 1e-3,
        "target_gpu": "cpu",
        **overrides,
    }


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_every_reader_sees_the_same_records(name, data_dir):
    path = MAKERS[name](data_dir / name)
    records = load_records(path)  # pre-flight and the estimator
    assert len(records) == 12
    assert script_reader.read_records(path) == records  # the training script
    assert eval_reader(path) == records  # the evals
    prepared = prepare(parse_spec(_spec(path)), data_dir / "prep")
    assert script_reader.read_records(prepared.data.train_copy) == records  # the copy the script trains on
    assert prepared.data.stats.rows == 12 and not prepared.data.stats.approximate


def test_sharegpt_speakers_map_to_roles(data_dir):
    record = load_records(sharegpt(data_dir / "s.jsonl"))[0]
    messages, target = to_messages(record, "messages")
    assert [m["role"] for m in messages] == ["system", "user"] and target == "In Billing."
    bad = data_dir / "bad.jsonl"
    bad.write_text(json.dumps({"conversations": [{"from": "narrator", "value": "x"}, {"from": "gpt", "value": "y"}]}))
    with pytest.raises(DataError, match="narrator.*known speakers"):
        prepare(parse_spec(_spec(bad)), data_dir / "prep")


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_each_shape_trains_on_the_copy_pre_flight_read(name, data_dir):
    path = MAKERS[name](data_dir / name)
    spec = parse_spec({**_spec(path), "max_steps": 2})
    job = run_pipeline(new_job(BudgetPolicy()), spec, ask=lambda job: ("approve", "person:test"))
    attempt = job.attempts[-1]
    assert attempt.status == "succeeded" and attempt.steps_completed == 2, attempt.error
    config = json.loads(Path(job.attempts[-1].log_path).parent.joinpath("config.json").read_text())
    assert config["dataset_path"] == job.prepared.data.train_copy


def test_a_folder_of_mixed_formats_is_named(data_dir):
    mixed = folder(data_dir / "mixed")
    (mixed / "chat.jsonl").write_text(json.dumps({"text": "just text"}) + "\n")
    with pytest.raises(DataError, match="mixes formats"):
        load_records(mixed)


def test_a_hub_dataset_id_offline_is_one_clear_line(data_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"Hugging Face dataset id.*HF_HUB_OFFLINE is set") as caught:
        load_records("hf:someone/support-chats")
    assert "\n" not in str(caught.value) and "check the path" not in str(caught.value)
    spec, problem = build_spec({"model_name": "local:tiny-llama", "dataset_path": "someone/support-chats"})
    assert spec is None and problem is not None and "HF_HUB_OFFLINE" in problem


def test_a_downloaded_hub_dataset_is_read_like_a_folder(data_dir):
    target = hub_dataset_folder("someone/support-chats")
    target.mkdir(parents=True)
    (target / "train.jsonl").write_text(
        "".join(json.dumps({"prompt": q, "completion": a}) + "\n" for q, a in QUESTIONS)
    )
    assert len(load_records("hf:someone/support-chats")) == 3
    prepared = prepare(parse_spec(_spec("hf:someone/support-chats")), data_dir / "prep")
    assert prepared.data.stats.rows == 3


def test_a_tokenizer_that_yields_no_tokens_is_an_error_not_a_zero_count(data_dir):
    model = data_dir / "qwen-config-only"
    model.mkdir()
    config = json.loads((ROOT / "tools/inputs/model_configs/qwen2.5-0.5b.json").read_text())
    (model / "config.json").write_text(json.dumps(config))
    load_tokenizer.cache_clear()
    with pytest.raises(DataError, match="no tokens|cannot tokenize"):
        load_tokenizer(str(model))
    with pytest.raises(DataError):
        prepare(
            parse_spec(_spec(sharegpt(data_dir / "s.jsonl"), model_name=str(model), target_gpu="l4")), data_dir / "p"
        )


def test_a_hub_dataset_id_is_downloaded_once_where_the_hub_answers(data_dir, monkeypatch):
    fetched = []

    def fetch(dataset_id: str) -> list[dict]:
        fetched.append(dataset_id)
        return [{"instruction": q, "input": "", "output": a} for q, a in QUESTIONS]

    monkeypatch.setattr(hub_data, "hub_reachable", lambda: True)
    monkeypatch.setattr(hub_data, "fetch_rows", fetch)  # the network is the only thing stood in for
    assert len(load_records("tatsu-lab/alpaca")) == 3  # a bare OWNER/NAME that is no file here
    assert len(load_records("hf:tatsu-lab/alpaca")) == 3
    assert fetched == ["tatsu-lab/alpaca"]  # downloaded once, then read as a local folder
    assert (hub_dataset_folder("tatsu-lab/alpaca") / "train.jsonl").is_file()


def test_a_fresh_machine_counts_a_bundled_models_tokens_exactly(data_dir, monkeypatch):
    """`make demo` on a fresh machine: the estimate builds the bundled model, so its count is the tokenizer's."""
    monkeypatch.setenv("AEGIS_MODEL_CACHE", str(data_dir / "fresh-model-cache"))
    load_tokenizer.cache_clear()
    try:
        prepared = prepare(parse_spec(_spec(sharegpt(data_dir / "s.jsonl"), target_gpu="a10g")), data_dir / "prep")
    finally:
        load_tokenizer.cache_clear()
    assert not prepared.data.stats.approximate
    assert (data_dir / "fresh-model-cache").is_dir()


def test_aegis_train_names_an_unreachable_hub_dataset_in_one_line(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = data_dir / "spec.yaml"
    spec.write_text("model_name: local:tiny-llama\ndataset_path: hf:someone/support-chats\ntarget_gpu: cpu\n")
    assert main(["train", str(spec), "--yes"]) == 2
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE is set" in err and "Traceback" not in err and "has not been downloaded" not in err
