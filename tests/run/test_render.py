"""The renderer: spec values reach the script only through config.json, never as code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools.core.errors import AegisError
from tools.core.spec import TrainingSpec
from tools.inputs.local_models import resolve_model
from tools.recipe import formatting
from tools.run import render
from tools.run.failures import EXIT_CODES
from tools.run.render import RECIPE_MODULES, RenderedScript, decide_precision, recipe_sections, render_script
from tools.run.sandbox import available_cores, sandbox_env

RUFF_RULES = ["--select", "E,F,I,UP,B,W", "--line-length", "120", "--target-version", "py311"]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"prompt": "hi", "completion": "hello"}) + "\n", encoding="utf-8")
    return path


def _spec(dataset: Path, **fields) -> TrainingSpec:
    return TrainingSpec(model_name="local:tiny-llama", dataset_path=str(dataset), target_gpu="cpu", **fields)


def _render(spec: TrainingSpec, workdir: Path, dataset: Path, **kwargs) -> RenderedScript:
    kwargs.setdefault("model_path", "/models/tiny")
    return render_script(spec, workdir, dataset_path=dataset, eval_dataset_path=None, **kwargs)


def test_writes_script_and_config(tmp_path: Path, dataset: Path) -> None:
    spec = _spec(dataset, max_steps=7)
    rendered = _render(spec, tmp_path / "attempt-1", dataset, extra={"checkpoint_every": 5})
    assert rendered.script_path == (tmp_path / "attempt-1" / "train.py").resolve()
    config = json.loads(rendered.config_path.read_text())
    assert config == rendered.config
    assert config["spec"] == spec.model_dump(mode="json")
    assert config["model_path"] == "/models/tiny"
    assert Path(config["dataset_path"]).is_absolute() and config["eval_dataset_path"] is None
    assert config["output_dir"] == str(rendered.workdir / "output")
    assert config["metrics_path"] == str(rendered.workdir / "metrics.jsonl")
    assert config["max_steps"] == 7 and config["checkpoint_every"] == 5 and config["resume_from"] is None
    assert config["precision"] in ("bf16", "fp32") and config["device"] == "cpu"
    assert RenderedScript.from_paths(rendered.script_path, rendered.config_path) == rendered


def test_script_is_the_same_for_every_spec(tmp_path: Path, dataset: Path) -> None:
    one = _render(_spec(dataset), tmp_path / "a", dataset)
    two = _render(_spec(dataset, method="full_finetune", learning_rate=1e-3, seq_len=64), tmp_path / "b", dataset)
    assert one.script_path.read_text() == two.script_path.read_text()


def test_script_compiles_and_passes_ruff(tmp_path: Path, dataset: Path) -> None:
    rendered = _render(_spec(dataset), tmp_path, dataset)
    subprocess.run([sys.executable, "-m", "py_compile", str(rendered.script_path)], check=True)
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", *RUFF_RULES, str(rendered.script_path)],
        capture_output=True,
        text=True,
    )
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr


def test_the_script_is_the_recipe_modules_inlined(tmp_path: Path, dataset: Path) -> None:
    script = _render(_spec(dataset), tmp_path, dataset).script_path.read_text()
    _, sections = recipe_sections()
    assert [s.path for s in sections] == [f"tools/recipe/{m}.py" for m in RECIPE_MODULES]
    positions = [script.index(f"# {s.path}\n") for s in sections]
    assert positions == sorted(positions)
    for section in sections:
        assert section.body in script
    body = Path(formatting.__file__).read_text().replace("from __future__ import annotations\n", "", 1).strip()
    assert body in script  # a module without imports stands in the script exactly as it is
    tree = ast.parse(script)
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [name for name in imported if name and name.split(".")[0] == "tools"]
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    assert {"encode_record", "load_config", "resolve_precision", "default_lora_targets", "FineTuneRecipe"} <= defined
    for name, code in EXIT_CODES.items():
        assert f"EXIT_{name.upper()} = {code}\n" in script


def test_the_script_trains_where_aegis_cannot_be_imported(tmp_path: Path, dataset: Path) -> None:
    tiny = resolve_model("local:tiny-llama").path
    rendered = _render(_spec(dataset, max_steps=1, seq_len=32), tmp_path / "run", dataset, model_path=tiny)
    # `import tools` fails in this process, as on a machine that has only train.py and config.json
    probe = (
        "import runpy, sys; sys.modules['tools'] = None; "
        "sys.argv = [sys.argv[1], '--config', sys.argv[2]]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(rendered.script_path), str(rendered.config_path)],
        cwd=rendered.workdir,
        env=sandbox_env(str(tmp_path), available_cores()),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (rendered.output_dir / "result.json").is_file()


def test_a_recipe_module_out_of_order_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "RECIPE_MODULES", ("config", "exits", "precision", "formatting"))
    with pytest.raises(AegisError, match="before the module that defines them"):
        recipe_sections()


def test_model_name_cannot_inject_code(tmp_path: Path, dataset: Path) -> None:
    marker = tmp_path / "pwned"
    evil = f'x"; import os; os.system("touch {marker}"); "'
    spec = _spec(dataset).model_copy(update={"model_name": evil})
    rendered = _render(spec, tmp_path / "run", dataset, model_path=evil)
    script = rendered.script_path.read_text()
    assert evil not in script and str(marker) not in script and "os.system" not in script
    subprocess.run([sys.executable, "-m", "py_compile", str(rendered.script_path)], check=True)
    proc = subprocess.run(
        [sys.executable, str(rendered.script_path), "--config", str(rendered.config_path)],
        cwd=rendered.workdir,
        env=sandbox_env(str(tmp_path), available_cores()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == EXIT_CODES["config"], proc.stderr[-2000:]
    assert "AEGIS-ERROR [model_not_found]" in proc.stderr
    assert not marker.exists()


def test_faked_failures_are_not_a_run_option(tmp_path: Path, dataset: Path) -> None:
    with pytest.raises(AegisError, match="nan_after_step"):
        _render(_spec(dataset), tmp_path, dataset, extra={"nan_after_step": 3})
    with pytest.raises(AegisError, match="checkpoint_every"):
        _render(_spec(dataset), tmp_path, dataset, extra={"checkpoint_every": 0})
    with pytest.raises(AegisError, match="resume_from"):
        _render(_spec(dataset), tmp_path, dataset, extra={"resume_from": str(tmp_path)})
    with pytest.raises(AegisError, match="device"):
        _render(_spec(dataset), tmp_path, dataset, device="tpu")


def test_precision_decision(dataset: Path) -> None:
    assert decide_precision(_spec(dataset, precision="fp32"), "cuda") == "fp32"
    assert decide_precision(_spec(dataset).model_copy(update={"target_gpu": "t4"}), "cuda") == "fp16"
    assert decide_precision(_spec(dataset).model_copy(update={"target_gpu": "a10g"}), "cuda") == "bf16"
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    expected = "bf16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "fp32"
    assert decide_precision(_spec(dataset), "cpu") == expected
