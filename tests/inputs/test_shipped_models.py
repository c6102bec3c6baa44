"""Every shipped model config goes through `aegis estimate` and the CPU smoke run of its architecture.

Issue 17: Qwen2.5's config carries a per-layer list (layer_types) that the shrunken smoke model must cut
to its own depth, or transformers refuses to build it; and a seq_len beyond a model's positions is a spec
error naming both numbers, not an IndexError in the smoke run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from tools.core.errors import SpecError
from tools.core.spec import parse_spec
from tools.inputs.model_config import check_seq_len, load_model_config, max_positions, shipped_models
from tools.inputs.prepared import prepare
from tools.run.smoke import run_preflight

ROOT = Path(__file__).resolve().parents[2]


def _spec(model: str, **overrides: object) -> dict:
    return {
        "model_name": model,
        "dataset_path": str(ROOT / "data/sample.jsonl"),
        "method": "lora",
        "micro_batch_size": 2,
        "seq_len": 128,
        "target_gpu": "l4",
        **overrides,
    }


def _one_name_per_config() -> list[str]:
    """One hub id per shipped config file (the index also holds short aliases for the same files)."""
    index = json.loads((ROOT / "tools/inputs/model_configs/index.json").read_text())
    first: dict[str, str] = {}
    for name, file in index.items():
        if "/" in name or name == "gpt2":
            first.setdefault(file, name)
    return sorted(first.values())


MODELS = _one_name_per_config()


def test_every_config_file_is_covered():
    files = {p.name for p in (ROOT / "tools/inputs/model_configs").glob("*.json")} - {"index.json"}
    index = json.loads((ROOT / "tools/inputs/model_configs/index.json").read_text())
    assert {index[m] for m in MODELS} == files
    assert set(MODELS) <= set(shipped_models())


@pytest.mark.parametrize("model", MODELS)
def test_aegis_estimate_prices_every_shipped_model(model, tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(_spec(model)))
    assert main(["estimate", str(spec), "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)["estimate"]
    assert estimate["estimated_cost_usd"] > 0 and estimate["cost_breakdown"]["gpu"] == "l4"


@pytest.mark.parametrize("model", MODELS)
def test_every_shipped_model_passes_the_cpu_smoke_run(model, tmp_path):
    spec = parse_spec(_spec(model))
    report = run_preflight(prepare(spec, tmp_path / "data"), tmp_path / "pf", device="cuda")
    smoke = next(c for c in report.checks if c.name == "cpu_smoke_run")
    assert smoke.status == "pass", smoke.detail
    assert report.smoke is not None and report.smoke["steps"] == 2


@pytest.mark.parametrize("model", MODELS)
def test_seq_len_beyond_the_models_positions_names_both_numbers(model, tmp_path, capsys):
    limit = max_positions(load_model_config(model))
    assert limit is not None
    with pytest.raises(SpecError, match=rf"seq_len' is {limit * 2}.*{limit:,} positions"):
        check_seq_len(model, limit * 2, load_model_config(model))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(_spec(model, seq_len=limit * 2)))
    assert main(["estimate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert str(limit * 2) in err and f"{limit:,}" in err and "Traceback" not in err
