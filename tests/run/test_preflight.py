"""Pre-flight: free local checks that stop a run that could never work before anyone is asked to pay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.core.errors import DataError
from tools.core.spec import BudgetPolicy, parse_spec
from tools.inputs.model_config import load_model_config, shipped_models
from tools.inputs.prepared import prepare
from tools.job.pipeline import run_pipeline
from tools.job.state import new_job
from tools.plan.preflight import check_rows
from tools.run import smoke
from tools.run.render import render_script
from tools.run.smoke import run_preflight, shrink_config

pytestmark = pytest.mark.usefixtures("gpu_cloud")  # GPU targets run on a stand-in for Modal's cloud

ROOT = Path(__file__).resolve().parents[2]


def chat_rows(long_prompt_rows: set[int], n: int = 6) -> list[dict]:
    rows = []
    for i in range(1, n + 1):
        question = "Where is my invoice? " * (60 if i in long_prompt_rows else 1)
        rows.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "Here."}]})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_spec(dataset: Path | str, **overrides) -> dict:
    return {
        "model_name": "local:tiny-llama",
        "dataset_path": str(dataset),
        "method": "lora",
        "micro_batch_size": 2,
        "seq_len": 128,
        "learning_rate": 1e-3,
        "target_gpu": "cpu",
        **overrides,
    }


def test_rows_that_lose_every_reply_token_stop_the_run_before_the_gate_asks(tmp_path, monkeypatch):
    monkeypatch.setenv("AEGIS_DATA_DIRS", str(tmp_path))
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows({3, 5}))
    asked = []

    def ask(job):
        asked.append(job)
        return "approve", "person:test"

    policy = BudgetPolicy(soft_threshold_usd=0.0, max_budget_usd=10.0)
    job = run_pipeline(new_job(policy), parse_spec(tiny_spec(data, target_gpu="a10g")), ask=ask)

    assert asked == [] and job.attempts == [] and job.status == "refused"
    failed = next(c for c in job.preflight.checks if c.status == "fail")
    assert failed.name == "target_tokens"
    assert "rows 3, 5" in failed.detail and "raise seq_len to at least" in failed.detail
    assert "rows 3, 5" in job.gate.reason
    events = job.folder.events()
    assert any(e.phase == "preflight" and e.status == "failed" for e in events)
    assert not any(e.phase == "train" for e in events)
    assert "rows 3, 5" in Path(job.report_path).read_text()


def test_a_script_bound_for_a10g_runs_two_training_steps_on_the_cpu(tmp_path):
    spec = parse_spec(tiny_spec(ROOT / "data/sample.jsonl", target_gpu="a10g", micro_batch_size=4))
    report = run_preflight(prepare(spec, tmp_path / "data"), tmp_path / "pf", device="cuda")
    assert report.passed, report.summary()
    smoke = next(c for c in report.checks if c.name == "cpu_smoke_run")
    assert smoke.status == "pass"
    if not report.smoke.get("cached"):  # an earlier test may have run the identical smoke run already
        steps = [json.loads(x) for x in (tmp_path / "pf/smoke/metrics.jsonl").read_text().splitlines()]
        assert [s["step"] for s in steps if s["type"] == "step"] == [1, 2]
        config = json.loads((tmp_path / "pf/smoke/config.json").read_text())
        assert config["device"] == "cpu" and config["spec"]["micro_batch_size"] == 2
        assert Path(config["model_path"]).parent.name == "shrunken"
    assert report.smoke["steps"] == 2
    script = json.loads((tmp_path / "pf/script/config.json").read_text())
    assert script["device"] == "cuda"  # the real run's script is the one checked, for its own device


def test_a_smoke_run_that_fails_stops_the_gpu_run(tmp_path):
    spec = parse_spec(tiny_spec(ROOT / "data/sample.jsonl", target_gpu="a10g", lora_target_modules=["no_such_proj"]))
    report = run_preflight(prepare(spec, tmp_path / "data"), tmp_path / "pf", device="cuda")
    assert not report.passed
    failed = report.failures[0]
    assert failed.name == "cpu_smoke_run" and "no_such_proj" in failed.detail


def test_a_torn_smoke_cache_entry_runs_the_smoke_run_again(tmp_path, monkeypatch):
    monkeypatch.setenv("AEGIS_PREFLIGHT_CACHE", str(tmp_path / "cache"))
    prepared = prepare(parse_spec(tiny_spec(ROOT / "data/sample.jsonl", target_gpu="a10g")), tmp_path / "data")
    assert run_preflight(prepared, tmp_path / "one", device="cuda").passed
    (entry,) = (tmp_path / "cache").glob("*.json")
    entry.write_text('{"steps": 2, "seco', encoding="utf-8")  # a crash or a full disk in the middle of a write
    again = run_preflight(prepared, tmp_path / "two", device="cuda")
    assert again.passed and not again.smoke.get("cached") and (tmp_path / "two/smoke/metrics.jsonl").is_file()
    assert json.loads(entry.read_text(encoding="utf-8"))["steps"] == 2  # whole again


def test_a_cache_that_cannot_be_written_does_not_fail_the_smoke_run(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"  # its "cache" folder cannot be made: every write there fails, as on a full disk
    blocker.write_text("x", encoding="utf-8")
    monkeypatch.setenv("AEGIS_PREFLIGHT_CACHE", str(blocker / "cache"))
    prepared = prepare(parse_spec(tiny_spec(ROOT / "data/sample.jsonl", target_gpu="a10g")), tmp_path / "data")
    report = run_preflight(prepared, tmp_path / "pf", device="cuda")
    assert report.passed and report.smoke["steps"] == 2 and blocker.read_text(encoding="utf-8") == "x"


def test_a_stop_ends_the_smoke_run_and_nothing_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("AEGIS_PREFLIGHT_CACHE", str(tmp_path / "cache"))
    prepared = prepare(parse_spec(tiny_spec(ROOT / "data/sample.jsonl", target_gpu="a10g")), tmp_path / "data")
    report = run_preflight(prepared, tmp_path / "pf", device="cuda", should_stop=lambda: True)
    assert not report.passed and "stopped" in report.failures[0].detail
    assert not list((tmp_path / "cache").glob("*.json"))


def test_cpu_runs_skip_the_smoke_run_and_report_truncation(tmp_path):
    spec = parse_spec(tiny_spec(ROOT / "data/text.jsonl", seq_len=32))
    report = run_preflight(prepare(spec, tmp_path / "data"), tmp_path / "pf", device="cpu")
    assert report.passed and report.smoke is None
    assert report.rows == 179 and 0 < report.truncated_rows <= 179
    truncation = next(c for c in report.checks if c.name == "truncation")
    assert f"{report.truncated_rows} of 179" in truncation.detail
    assert {c.name for c in report.checks} >= {"dataset_parses", "rendering", "target_tokens", "script"}


def test_a_row_without_an_assistant_turn_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("AEGIS_DATA_DIRS", str(tmp_path))
    rows = chat_rows(set())
    rows[3] = {"messages": [{"role": "user", "content": "hello"}]}
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    with pytest.raises(DataError, match="row 4"):  # the data is read once, when the spec is prepared
        prepare(parse_spec(tiny_spec(data)), tmp_path / "data")


def test_without_the_tokenizer_a_lost_reply_is_only_a_warning():
    checks, truncated = check_rows(chat_rows({2}), "messages", None, 64, source="data")
    check = next(c for c in checks if c.name == "target_tokens")
    assert check.status == "warn" and "rows 2" in check.detail and "chars/4" in check.detail
    assert truncated == 1


@pytest.mark.parametrize(
    "name", sorted({"gpt2", "meta-llama/Llama-2-7b-hf", "Qwen/Qwen2.5-0.5B", "mistralai/Mistral-7B-v0.1"})
)
def test_shrunken_models_keep_the_architecture(name):
    import torch
    from transformers import AutoModelForCausalLM

    assert name in shipped_models()
    config = load_model_config(name)
    shrunk = shrink_config(config, 512, {"eos_token_id": 2, "bos_token_id": 1, "pad_token_id": None})
    model = AutoModelForCausalLM.from_config(shrunk)
    with torch.device("meta"):
        full = AutoModelForCausalLM.from_config(config)
    assert type(model) is type(full)
    assert shrunk.num_hidden_layers == 2
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    out = model(input_ids=torch.tensor([[1, 5, 9]]), labels=torch.tensor([[1, 5, 9]]))
    assert torch.isfinite(out.loss)


def test_the_script_check_compiles_the_script_and_reads_the_config_with_the_recipe(tmp_path, monkeypatch):
    spec = parse_spec(tiny_spec(ROOT / "data/sample.jsonl"))
    data = ROOT / "data/sample.jsonl"
    rendered = render_script(spec, tmp_path, model_path="/m", dataset_path=data, eval_dataset_path=None)
    monkeypatch.setattr(smoke, "render_source", lambda: "raise SystemExit('the check ran the script')\n")
    assert smoke.check_script(rendered.config_path).status == "pass"  # compiled, never run

    config = json.loads(rendered.config_path.read_text())
    config["spec"]["seq_len"], config["device"] = 0, "tpu"
    rendered.config_path.write_text(json.dumps(config))
    check = smoke.check_script(rendered.config_path)
    assert check.status == "fail" and "spec.seq_len must be a positive integer" in check.detail
    assert "device must be 'cpu' or 'cuda'" in check.detail

    monkeypatch.setattr(smoke, "render_source", lambda: "def broken(:\n")
    assert "not valid Python" in smoke.check_script(rendered.config_path).detail
