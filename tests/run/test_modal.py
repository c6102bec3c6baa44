"""The Modal executor, offline: app/image/function definitions, GPU mapping, timeout rule, the
not-configured path, and the container entry point run for real on the CPU."""

from __future__ import annotations

from contextlib import nullcontext
from importlib.metadata import version
from pathlib import Path, PurePosixPath
from types import SimpleNamespace

import modal
import pytest
from modal._image import _Image
from modal._utils.async_utils import synchronizer
from modal._utils.function_utils import parse_gpu_config

from tools.core.catalog import load_catalog
from tools.core.errors import AegisError
from tools.core.paths import BUNDLED_DATA_DIR
from tools.core.spec import ExecutionResult, TrainingSpec
from tools.inputs.local_models import resolve_model
from tools.run import modal as executor_modal
from tools.run import modal_app, modal_entry
from tools.run.local import run_local
from tools.run.modal import describe_plan, run_on_modal
from tools.run.modal_app import (
    IMAGE_PACKAGES,
    ModalNotConfigured,
    build_app,
    build_image,
    modal_gpu_spec,
    modal_status,
    modal_timeout_s,
)
from tools.run.modal_volume import stage_config
from tools.run.render import RenderedScript, render_script

SETUP = "pip install modal && modal token new"


@pytest.fixture
def no_modal_token(tmp_path, monkeypatch):
    """A person who never ran `modal token new`: empty HOME, no MODAL_* credentials."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_CONFIG_PATH", "MODAL_PROFILE"):
        monkeypatch.delenv(var, raising=False)


def _pins() -> dict[str, str]:
    return dict(p.split("==") for p in IMAGE_PACKAGES)


def _dockerfile_commands(image: modal.Image) -> list[str]:
    """Every Dockerfile line Modal would build for the image, read offline from its layers (modal 1.x internals)."""
    commands: list[str] = []

    def walk(layer: _Image) -> None:
        cells = dict(
            zip(layer._load.__code__.co_freevars, [c.cell_contents for c in layer._load.__closure__ or []], strict=True)
        )
        if cells.get("dockerfile_function"):
            commands.extend(cells["dockerfile_function"]("2025.06").commands)
        for dep in layer._deps():
            if isinstance(dep, _Image):
                walk(dep)

    walk(synchronizer._translate_in(image))
    return commands


# --- GPU mapping -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n, g in load_catalog().gpus.items() if g.modal_name])
def test_every_catalog_gpu_maps_to_a_modal_gpu_string(name):
    modal_name = load_catalog().gpus[name].modal_name
    assert modal_gpu_spec(name, 1) == modal_name
    assert modal_gpu_spec(name.upper(), 2) == f"{modal_name}:2"
    parsed = parse_gpu_config(modal_gpu_spec(name, 4))  # Modal's own parser accepts what we send
    assert (parsed.gpu_type, parsed.count) == (modal_name.upper(), 4)


def test_expected_modal_names():
    names = {n: modal_gpu_spec(n, 1) for n, g in load_catalog().gpus.items() if g.modal_name}
    assert set(names.values()) == {"T4", "L4", "A10G", "L40S", "A100-40GB", "A100-80GB", "H100", "H200", "B200"}
    assert modal_gpu_spec("h100", 8) == "H100:8"


def test_cpu_and_bad_counts_are_refused_with_a_reason():
    with pytest.raises(AegisError, match=r"'cpu' is not a Modal GPU.*run_local"):
        modal_gpu_spec("cpu", 1)
    with pytest.raises(AegisError, match="between 1 and 4 for A10G"):
        modal_gpu_spec("a10g", 8)
    with pytest.raises(AegisError, match="between 1 and 8"):
        modal_gpu_spec("h100", 0)
    with pytest.raises(AegisError, match="unknown GPU"):
        modal_gpu_spec("tpu-v5", 1)


# --- timeout rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("estimate", "expected"),
    [(0, 600), (10.0, 620), (100.4, 801), (3600, 7800), (50_000, 86_400), (1e9, 86_400)],
)
def test_timeout_rule(estimate, expected):
    assert modal_timeout_s(estimate) == expected


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_timeout_rejects_nonsense(bad):
    with pytest.raises(AegisError, match="estimated_seconds"):
        modal_timeout_s(bad)


def test_plan_states_the_worst_case():
    spec = TrainingSpec(model_name="local:tiny-llama", dataset_path="data/sample.jsonl", target_gpu="h100", num_gpus=2)
    plan = describe_plan(spec, 900)
    price = load_catalog().gpus["h100"].price_usd_per_sec * 2
    assert plan["gpu"] == "H100:2" and plan["launcher"] == "torchrun" and plan["timeout_s"] == 2400
    assert plan["max_cost_usd"] == pytest.approx(2400 * price)


# --- not configured ----------------------------------------------------------------------------------


def test_not_configured_says_so_and_how_to_fix(no_modal_token):
    ok, hint = modal_status()
    assert not ok
    assert "Modal is not configured" in hint and SETUP in hint and "run_local" in hint
    assert "MODAL_TOKEN_ID" in hint


def test_run_on_modal_refuses_before_anything_runs(no_modal_token, tmp_path, monkeypatch):
    monkeypatch.setattr(executor_modal, "build_app", lambda *a, **k: pytest.fail("must not build an app"))
    spec = TrainingSpec(model_name="local:tiny-llama", dataset_path="data/sample.jsonl", target_gpu="a10g")
    with pytest.raises(ModalNotConfigured, match="pip install modal && modal token new"):
        run_on_modal(spec, tmp_path, object(), estimated_seconds=60)  # type: ignore[arg-type]
    assert not (tmp_path / "modal.log").exists()


def test_half_set_env_token_names_the_missing_variable(no_modal_token, monkeypatch):
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-not-shown-123")
    ok, hint = modal_status()
    assert not ok and "MODAL_TOKEN_SECRET is missing" in hint and "ak-not-shown-123" not in hint


def test_configured_status_never_echoes_a_secret(no_modal_token, tmp_path, monkeypatch):
    toml = tmp_path / "home" / ".modal.toml"
    toml.parent.mkdir(parents=True)
    toml.write_text(
        '[old]\ntoken_id = "ak-old"\ntoken_secret = "as-old"\n\n'
        '[work]\ntoken_id = "ak-ID-hush1"\ntoken_secret = "as-VALUE-hush2"\nactive = true\n'
    )
    ok, hint = modal_status()
    assert ok and "profile 'work'" in hint
    assert "hush" not in hint and "ak-" not in hint and "as-" not in hint

    toml.write_text('[default]\nserver_url = "https://api.modal.com"\n')
    ok, hint = modal_status()
    assert not ok and "no token_id/token_secret" in hint and SETUP in hint

    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-env-hush3")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-env-hush4")
    ok, hint = modal_status()
    assert ok and "hush" not in hint


def test_broken_config_file_is_reported_not_raised(no_modal_token, tmp_path):
    toml = tmp_path / "home" / ".modal.toml"
    toml.parent.mkdir(parents=True)
    toml.write_text("this is = = not toml")
    ok, hint = modal_status()
    assert not ok and "cannot be read" in hint


# --- app, image, function ----------------------------------------------------------------------------


def test_app_and_function_build_without_a_token(no_modal_token, monkeypatch):
    seen: dict = {}
    real = modal.App.function

    def spy(self, **kwargs):
        seen.update(kwargs)
        return real(self, **kwargs)

    monkeypatch.setattr(modal.App, "function", spy)
    app, function = build_app("H100:2", 7800)
    assert isinstance(app, modal.App) and isinstance(function, modal.Function)
    assert app.name == modal_app.APP_NAME
    assert function._spec_.gpus == "H100:2"
    assert seen["timeout"] == 7800 and seen["gpu"] == "H100:2"
    assert "retries" not in seen  # no Modal-side retries: remediation and the budget gate own that
    assert seen["include_source"] is False and seen["single_use_containers"] is True
    assert list(seen["volumes"]) == [modal_app.VOLUME_MOUNT]
    assert seen["secrets"] == []
    assert synchronizer._translate_in(function)._is_generator  # streams the log back (no public flag)


def test_image_pins_the_training_stack_to_the_local_versions():
    pins = _pins()
    for package in ("transformers", "peft", "datasets", "accelerate", "tokenizers", "safetensors"):
        assert pins[package] == version(package), package
    assert pins["torch"] == version("torch").split("+")[0]  # the CUDA wheel of the CPU build used locally
    assert "bitsandbytes" in pins

    image = build_image()
    commands = "\n".join(_dockerfile_commands(image))
    assert "FROM python:3.11" in commands
    for pin in IMAGE_PACKAGES:
        assert pin in commands
    assert synchronizer._translate_in(image)._added_python_source_set == frozenset({"tools"})


def test_secrets_come_from_modal_secret_names_only(monkeypatch):
    monkeypatch.setenv(modal_app.SECRETS_ENV, "huggingface, wandb")
    monkeypatch.setenv("HF_TOKEN", "hf_local_value_never_sent")
    secrets = modal_app.modal_secrets()
    assert len(secrets) == 2 and all(isinstance(s, modal.Secret) for s in secrets)
    assert "hf_local_value_never_sent" not in repr(secrets)


# --- staging -----------------------------------------------------------------------------------------


def test_stage_config_moves_inputs_and_outputs_onto_the_volume(tmp_path):
    model = tmp_path / "tiny-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "hi"}\n')
    config = {
        "model_path": str(model),
        "dataset_path": str(data),
        "eval_dataset_path": None,
        "output_dir": str(tmp_path / "output"),
        "metrics_path": str(tmp_path / "metrics.jsonl"),
        "device": "cuda",
    }
    staged, uploads = stage_config(config, PurePosixPath("runs/r1/attempt-1"))
    assert staged["dataset_path"] == "/vol/runs/r1/attempt-1/inputs/dataset_path-train.jsonl"
    assert staged["model_path"].startswith("/vol/inputs/tiny-model-")
    assert staged["output_dir"] == "/vol/runs/r1/attempt-1/output"
    assert staged["metrics_path"] == "/vol/runs/r1/attempt-1/metrics.jsonl"
    assert staged["eval_dataset_path"] is None and staged["device"] == "cuda"
    assert sorted(str(local) for local, _ in uploads) == sorted([str(model), str(data)])

    hub = stage_config({**config, "model_path": "Qwen/Qwen2.5-0.5B"}, PurePosixPath("runs/r1/attempt-1"))[0]
    assert hub["model_path"] == "Qwen/Qwen2.5-0.5B"

    checkpoint = tmp_path / "attempt-1/output/checkpoints/step-20"
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.json").write_text('{"step": 20}')
    resumed, uploads = stage_config({**config, "resume_from": str(checkpoint)}, PurePosixPath("runs/r1/attempt-2"))
    assert resumed["resume_from"].startswith("/vol/inputs/step-20-")  # a retry resumes from it in the container
    assert str(checkpoint) in [str(local) for local, _ in uploads]


# --- run_on_modal against a scripted Modal (no account, no network) -----------------------------------


def _scripted_run(monkeypatch, tmp_path: Path, events: list):
    """run_on_modal with Modal's app, function and volume replaced by a script of container events."""
    calls: dict[str, list] = {"jobs": [], "download": [], "fetch": []}

    def remote_gen(job):
        calls["jobs"].append(job)
        for event in events:
            if isinstance(event, BaseException):
                raise event
            yield event

    function = SimpleNamespace(remote_gen=remote_gen)
    monkeypatch.setattr(executor_modal, "modal_status", lambda: (True, "configured"))
    monkeypatch.setattr(executor_modal, "build_app", lambda *a, **k: (SimpleNamespace(run=nullcontext), function))
    monkeypatch.setattr(modal.Volume, "from_name", lambda *a, **k: "volume")
    monkeypatch.setattr(executor_modal, "upload", lambda volume, uploads: None)
    monkeypatch.setattr(executor_modal, "download", lambda volume, remote, local: calls["download"].append(remote))
    monkeypatch.setattr(executor_modal, "fetch_checkpoints", lambda *a: calls["fetch"].append(a))
    (tmp_path / "train.py").write_text("print('hi')\n")
    config = {"output_dir": str(tmp_path / "output"), "metrics_path": str(tmp_path / "metrics.jsonl")}
    rendered = RenderedScript(script_path=tmp_path / "train.py", config_path=tmp_path / "config.json", config=config)
    workdir = tmp_path / "run-1" / "attempt-1"
    workdir.mkdir(parents=True)
    spec = TrainingSpec(model_name="local:tiny-llama", dataset_path="data/sample.jsonl", target_gpu="a10g")
    seen: list[dict] = []
    return lambda: run_on_modal(spec, workdir, rendered, estimated_seconds=60, on_progress=seen.append), calls, seen


def test_run_on_modal_streams_the_log_and_brings_the_result_home(monkeypatch, tmp_path):
    result = {"status": "succeeded", "executor": "modal", "gpu": "a10g", "steps_completed": 2, "actual_cost_usd": 0.5}
    events = [
        {"type": "started"},
        {"type": "log", "text": "step 1\n"},
        {"type": "step"},
        {"type": "result", "result": result},
    ]
    run, calls, seen = _scripted_run(monkeypatch, tmp_path, events)
    out = run()
    assert out.status == "succeeded" and out.steps_completed == 2 and out.actual_cost_usd == 0.5
    assert out.output_dir == str(tmp_path / "output") and out.log_path.endswith("attempt-1/modal.log")
    assert (tmp_path / "run-1/attempt-1/modal.log").read_text() == "step 1\n"
    assert [e["type"] for e in seen] == ["modal", "started", "log", "step"]  # the result is returned, not streamed
    assert seen[0]["timeout_s"] == 720 and calls["jobs"][0]["timeout_s"] == 600  # the script stops first
    assert calls["jobs"][0]["run_dir"] == "/vol/runs/run-1/attempt-1"
    assert calls["download"] == ["runs/run-1/attempt-1/output"] and calls["fetch"] == []


@pytest.mark.parametrize(
    ("events", "status", "failure", "message", "fetched"),
    [
        ([{"type": "started"}, modal.exception.FunctionTimeoutError("t")], "failed", "timeout", "720 s timeout", 1),
        ([{"type": "started"}, modal.exception.ConnectionError("down")], "failed", "other", "lost the connection", 0),
        ([{"type": "started"}, modal.exception.InvalidError("bad")], "failed", "other", "Modal error: InvalidError", 1),
        ([{"type": "started"}, KeyboardInterrupt()], "interrupted", "interrupted", "container was shut down", 0),
        ([{"type": "started"}], "failed", "other", "ended without a result", 0),
    ],
)
def test_run_on_modal_failures_are_billed_attempts(monkeypatch, tmp_path, events, status, failure, message, fetched):
    run, calls, _ = _scripted_run(monkeypatch, tmp_path, events)
    out = run()
    assert (out.status, out.failure_class, out.executor) == (status, failure, "modal")
    assert message in (out.error_message or "") and len(calls["fetch"]) == fetched
    assert out.actual_cost_usd >= 0 and out.duration_s >= 0


@pytest.mark.parametrize(
    ("error", "message"),
    [(modal.exception.AuthError("no"), "rejected the credentials"), (ConnectionError("down"), "could not reach")],
)
def test_run_on_modal_unreachable_before_start_is_not_configured(monkeypatch, tmp_path, error, message):
    run, _, _ = _scripted_run(monkeypatch, tmp_path, [error])
    with pytest.raises(ModalNotConfigured, match=message):
        run()


# --- the container entry point, for real on the CPU ----------------------------------------------------


def _tiny_job(tmp_path: Path):
    spec = TrainingSpec(
        model_name="local:tiny-llama",
        dataset_path=str(BUNDLED_DATA_DIR / "sample.jsonl"),
        target_gpu="cpu",
        max_steps=2,
        micro_batch_size=2,
        seq_len=64,
        eval_split=0.2,
    )
    model = resolve_model(spec.model_name)
    rendered = render_script(
        spec, tmp_path / "local", model_path=model.path, dataset_path=Path(spec.dataset_path), eval_dataset_path=None
    )
    return spec, rendered


@pytest.mark.slow
def test_entry_point_matches_run_local(tmp_path, monkeypatch):
    spec, rendered = _tiny_job(tmp_path)
    local = run_local(spec, rendered.workdir, rendered, timeout_s=600, memory_limit_mb=None)
    assert local.status == "succeeded", local.error_message

    commits: list[str] = []
    monkeypatch.setattr(modal_entry, "_commit", commits.append)  # the Volume commit needs Modal
    config = {
        **rendered.config,
        "output_dir": str(tmp_path / "remote" / "output"),
        "metrics_path": str(tmp_path / "remote" / "metrics.jsonl"),
    }
    job = {
        "script": rendered.script_path.read_bytes(),
        "config": config,
        "spec": spec.model_dump(mode="json"),
        "run_dir": str(tmp_path / "remote"),
        "volume": "aegis-ml",
        "gpu": "a10g",
        "num_gpus": 1,
        "price_usd_per_gpu_sec": 0.001,
        "timeout_s": 600,
    }
    events = list(modal_entry.remote_train(job))
    assert events[0]["type"] == "started" and events[-1]["type"] == "result"
    assert commits == ["aegis-ml"]
    assert any(e["type"] == "step" for e in events)  # progress streamed as it happened
    streamed = "".join(e["text"] for e in events if e["type"] == "log")
    assert streamed and (tmp_path / "remote" / "train.log").read_bytes().decode().startswith(streamed)
    remote = ExecutionResult.model_validate(events[-1]["result"])

    assert set(remote.model_dump()) == set(local.model_dump())
    assert remote.status == "succeeded" and remote.executor == "modal" and remote.gpu == "a10g"
    assert remote.steps_completed == local.steps_completed == 2
    assert remote.initial_train_loss == pytest.approx(local.initial_train_loss, rel=1e-3)
    assert remote.actual_cost_usd == pytest.approx(events[-1]["billed_seconds"] * 0.001)
    assert remote.actual_cost_usd >= remote.duration_s * 0.001
    assert Path(remote.output_dir or "").is_relative_to(tmp_path / "remote")
