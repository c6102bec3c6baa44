"""The command line: bad input is one line and exit code 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from tools.core.paths import PROJECT_ROOT

ROOT = PROJECT_ROOT


def write_spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = "model_name: local:tiny-llama\ndataset_path: data/sample.jsonl\ntarget_gpu: a10g\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "does not exist"),
        ("model_name: [unclosed\n", "is not valid"),
        (GOOD + "micro_batch_size: -4\n", "micro_batch_size"),
        (GOOD.replace("a10g", "tpu-v9"), "unknown GPU 'tpu-v9'"),
        (GOOD + "method: prefix_tuning\n", "method"),
        ("model_name: local:tiny-llama\ndataset_path: EMPTY\n", "empty"),
        ("model_name: local:tiny-llama\ndataset_path: ../../etc/passwd\n", "outside the allowed data folders"),
    ],
    ids=[
        "missing-file",
        "malformed-yaml",
        "negative-batch",
        "unknown-gpu",
        "unknown-method",
        "empty-dataset",
        "outside-folders",
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys, text, expected):
    monkeypatch.setenv("AEGIS_DATA_DIRS", f"{tmp_path}:{ROOT / 'data'}")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    spec = tmp_path / "missing.yaml" if text is None else write_spec(tmp_path, text.replace("EMPTY", str(empty)))
    assert main(["estimate", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err
    assert "Traceback" not in err and len(err.splitlines()) <= 3  # one message, wrapped by the terminal width


def test_estimate_prints_json_for_a_shipped_model(capsys):
    assert main(["estimate", str(ROOT / "data/specs/llama2_a10g.yaml"), "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)["estimate"]
    assert estimate["cost_breakdown"]["total_params"] > 6.7e9 and estimate["estimated_cost_usd"] > 0


def test_estimate_table_and_unknown_gpu_flag(capsys):
    assert main(["estimate", str(ROOT / "data/specs/llama2_a10g.yaml"), "--gpu", "h100"]) == 0
    assert "h100" in capsys.readouterr().out
    assert main(["estimate", str(ROOT / "data/specs/llama2_a10g.yaml"), "--gpu", "nope"]) == 2


def test_console_script_reports_bad_arguments_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "resume"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
