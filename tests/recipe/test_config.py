"""The recipe's config reader: typed values from config.json, and every problem listed at once."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from tools.core.spec import TrainingSpec
from tools.recipe.config import RecipeSpec, load_config, parse_config
from tools.recipe.exits import EXIT_CONFIG, RecipeFailure
from tools.recipe.precision import PRECISIONS
from tools.run.render import render_script


def _config(tmp_path: Path, **spec_fields) -> dict:
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"text": "hello"}) + "\n", encoding="utf-8")
    spec = TrainingSpec(model_name="local:tiny-llama", dataset_path=str(data), target_gpu="cpu", **spec_fields)
    rendered = render_script(spec, tmp_path / "run", model_path="/m", dataset_path=data, eval_dataset_path=None)
    return rendered.config


def test_a_rendered_config_parses_into_typed_values(tmp_path: Path) -> None:
    raw = _config(tmp_path, method="full_finetune", packing=False, lora_target_modules=["q_proj"], max_steps=3)
    cfg = parse_config(raw)
    assert cfg.spec.method == "full_finetune" and cfg.spec.packing is False
    assert cfg.spec.lora_target_modules == ["q_proj"] and cfg.max_steps == 3
    assert cfg.output_dir == Path(raw["output_dir"]) and cfg.eval_dataset_path is None and cfg.resume_from is None


def test_the_spec_fields_the_recipe_reads_exist_in_the_training_spec() -> None:
    """A field the host never writes would silently take its default in every run."""
    assert {f.name for f in fields(RecipeSpec)} <= set(TrainingSpec.model_fields)


def test_every_problem_is_listed_in_one_failure(tmp_path: Path) -> None:
    raw = _config(tmp_path)
    raw["spec"].update(method="dora", seq_len=0, learning_rate=float("nan"), lora_dropout=1.5, packing="yes")
    raw.update(device="tpu", precision="fp8", max_steps=-1, resume_from=str(tmp_path))
    del raw["metrics_path"]
    with pytest.raises(RecipeFailure) as caught:
        parse_config(raw)
    message = str(caught.value)
    assert caught.value.code == EXIT_CONFIG and caught.value.reason == "config"
    assert message.startswith("invalid config: ")
    for problem in (
        "'metrics_path' is missing",
        "spec.method must be one of ('full_finetune', 'lora', 'qlora')",
        "spec.seq_len must be a positive integer",
        "spec.learning_rate must be a positive finite number",
        "spec.lora_dropout must be a number from 0 to below 1",
        "spec.packing must be true or false",
        "device must be 'cpu' or 'cuda'",
        f"precision must be one of {PRECISIONS}",
        "max_steps must be a positive integer or null",
        "is not a checkpoint folder (no state.json)",
    ):
        assert problem in message
    assert message.count("; ") == 9


def test_a_missing_dataset_and_a_non_object_are_refused(tmp_path: Path) -> None:
    raw = _config(tmp_path)
    raw["dataset_path"] = str(tmp_path / "gone.jsonl")
    with pytest.raises(RecipeFailure, match="dataset_path '.*gone.jsonl' does not exist"):
        parse_config(raw)
    with pytest.raises(RecipeFailure, match="must be a JSON object, not list"):
        parse_config([raw])


def test_load_config_reads_the_file_and_names_an_unreadable_one(tmp_path: Path) -> None:
    raw = _config(tmp_path)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    assert load_config(path).model_path == "/m"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(RecipeFailure, match="cannot read config"):
        load_config(path)


def test_full_finetune_of_an_8b_model_on_8_h100s_renders_an_fsdp_run(tmp_path: Path) -> None:
    """ "Full fine-tune meta-llama/Meta-Llama-3-8B on 8 H100s": sharded, it fits; the script and config agree."""
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"text": "hello"}) + "\n", encoding="utf-8")
    spec = TrainingSpec(
        model_name="meta-llama/Meta-Llama-3-8B",
        dataset_path=str(data),
        method="full_finetune",
        target_gpu="h100",
        num_gpus=8,
        sharding="fsdp",
        optimizer="adamw_8bit",
        precision="bf16_pure",
    )
    rendered = render_script(
        spec, tmp_path / "run", model_path="/m", dataset_path=data, eval_dataset_path=None, device="cuda"
    )
    compile(rendered.script_path.read_text(encoding="utf-8"), str(rendered.script_path), "exec")
    cfg = load_config(rendered.config_path)
    assert (cfg.spec.sharding, cfg.spec.optimizer, cfg.precision) == ("fsdp", "adamw_8bit", "bf16_pure")
    assert cfg.device == "cuda"


@pytest.mark.parametrize(("field", "value"), [("sharding", "zero3"), ("optimizer", "sgd")])
def test_an_unknown_sharding_or_optimizer_is_refused(tmp_path: Path, field: str, value: str) -> None:
    raw = _config(tmp_path)
    raw["spec"][field] = value
    with pytest.raises(RecipeFailure) as caught:
        parse_config(raw)
    assert f"spec.{field} must be one of" in str(caught.value)
