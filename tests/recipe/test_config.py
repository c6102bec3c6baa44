"""The recipe's config reader: typed values from config.json, and every problem listed at once."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from tools.core.spec import TrainingSpec
from tools.recipe.config import SPEC_FIELDS, RecipeSpec, load_config, parse_config
from tools.recipe.exits import EXIT_CONFIG, RecipeFailure
from tools.recipe.formatting import FORMATS
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


# The JSON-schema words for what a field may hold, as pydantic writes them and as FieldRule's attributes say.
_SCHEMA_WORDS = {
    "ge": "minimum",
    "gt": "exclusiveMinimum",
    "le": "maximum",
    "lt": "exclusiveMaximum",
    "max_length": "maxItems",
}
_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string", list: "array"}


def _host_rule(name: str) -> dict[str, Any]:
    """Type, enum, default and bounds of one TrainingSpec field, from its JSON schema (a nullable one has anyOf)."""
    prop = TrainingSpec.model_json_schema()["properties"][name]
    branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
    assert len(branches) == 1, f"{name}: {prop}"
    wanted = {"type", "enum", *_SCHEMA_WORDS.values()}
    return {"default": prop.get("default"), **{k: v for k, v in branches[0].items() if k in wanted}}


def _recipe_rule(name: str) -> dict[str, Any]:
    """The same, in JSON-schema words, from the script's own table."""
    rule = SPEC_FIELDS[name]
    words = {_SCHEMA_WORDS[k]: getattr(rule, k) for k in _SCHEMA_WORDS if getattr(rule, k) is not None}
    return {
        "default": rule.default,
        "type": _JSON_TYPES[rule.kind],
        **({"enum": list(rule.choices)} if rule.choices else {}),
        **words,
    }


def test_the_recipe_reads_only_fields_the_host_writes() -> None:
    """A field the host never writes would silently take its default in every run."""
    assert {f.name for f in fields(RecipeSpec)} <= set(SPEC_FIELDS) <= set(TrainingSpec.model_fields)


@pytest.mark.parametrize("name", sorted(SPEC_FIELDS))
def test_host_and_script_agree_on_type_enum_default_and_bounds(name: str) -> None:
    """The host's model and the script's rule for one field, compared through their JSON schemas."""
    assert _host_rule(name) == _recipe_rule(name)


def test_host_and_script_agree_on_the_enums_kept_beside_the_recipe() -> None:
    """Precision and the data formats have their own tuples in the recipe (precision.py, formatting.py)."""
    assert _host_rule("precision")["enum"] == list(PRECISIONS)
    assert _host_rule("dataset_format")["enum"] == ["auto", *FORMATS]


def _edges(rule: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """Values the host's schema allows and refuses: each choice, and both sides of each bound (integers: a step of 1)."""
    if "enum" in rule:
        return list(rule["enum"]), ["not-a-choice"]
    if rule["type"] == "boolean":
        return [True, False], ["yes", 1]
    if rule["type"] == "array":
        return [["q_proj"], ["q_proj"] * rule["maxItems"]], [[], ["q_proj"] * (rule["maxItems"] + 1), [""]]
    step = 1 if rule["type"] == "integer" else 1e-6
    allowed, refused = [], []
    for word, inside, outside in (
        ("minimum", 0, -step),
        ("exclusiveMinimum", step, 0),
        ("maximum", 0, step),
        ("exclusiveMaximum", -step, 0),
    ):
        if word in rule:
            allowed.append(rule[word] + inside)
            refused.append(rule[word] + outside)
    return allowed, refused


@pytest.mark.parametrize("name", sorted(set(SPEC_FIELDS) - {"max_steps"}))
def test_the_script_accepts_what_the_host_allows_and_refuses_the_rest(tmp_path: Path, name: str) -> None:
    """The reader itself, not only its table: every choice and bound of the host's schema, on both sides of it."""
    rule = _host_rule(name)
    raw = _config(tmp_path)
    del raw["spec"][name]
    assert getattr(parse_config(raw).spec, name) == rule["default"]
    allowed, refused = _edges(rule)
    for value in allowed:
        raw["spec"][name] = value
        assert getattr(parse_config(raw).spec, name) == value
    for value in refused:
        raw["spec"][name] = value
        with pytest.raises(RecipeFailure, match=f"spec.{name} must be"):
            parse_config(raw)


def test_the_script_bounds_max_steps_as_the_host_does(tmp_path: Path) -> None:
    raw = _config(tmp_path)
    rule = _host_rule("max_steps")
    assert rule["default"] is None and parse_config(raw).max_steps is None
    allowed, refused = _edges(rule)
    for value in allowed:
        raw["max_steps"] = value
        assert parse_config(raw).max_steps == value
    for value in refused:
        raw["max_steps"] = value
        with pytest.raises(RecipeFailure, match="max_steps must be null or"):
            parse_config(raw)


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
        "spec.seq_len must be a positive integer from 16 to 131072",
        "spec.learning_rate must be a finite number above 0",
        "spec.lora_dropout must be a finite number from 0 to below 1",
        "spec.packing must be true or false",
        "device must be 'cpu' or 'cuda'",
        f"precision must be one of {PRECISIONS}",
        "max_steps must be null or a positive integer up to 100000000",
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
