"""Issue 17, CLI ergonomics: YAML errors keep line and column; an unknown spec field or command gets
"did you mean"; `aegis --version`. Each is one line on stderr with exit code 2, never a traceback."""

from __future__ import annotations

from importlib import metadata

import pytest

from agent.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"aegis {metadata.version('aegis-ml')}"


@pytest.mark.parametrize(("typed", "meant"), [("estmate", "estimate"), ("trian", "train"), ("reume", "resume")])
def test_a_misspelt_command_gets_did_you_mean(capsys, typed, meant):
    code, _, err = run(capsys, typed, "x")
    assert code == 2 and f"did you mean '{meant}'?" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("field", "meant"),
    [
        ("seqlen", "seq_len"),
        ("learning_rte", "learning_rate"),
        ("target-gpu", "target_gpu"),
        ("num_epoch", "num_epochs"),
    ],
)
def test_a_misspelt_spec_field_gets_did_you_mean(tmp_path, capsys, field, meant):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"model_name: local:tiny-llama\ndataset_path: data/sample.jsonl\n{field}: 3\n")
    code, _, err = run(capsys, "estimate", str(spec))
    assert code == 2 and f"'{field}' is not a known field (did you mean '{meant}'?)" in err


def test_a_field_nothing_like_any_other_gets_no_guess(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("model_name: local:tiny-llama\ndataset_path: data/sample.jsonl\nzzqx: 3\n")
    code, _, err = run(capsys, "estimate", str(spec))
    assert code == 2 and "'zzqx' is not a known field" in err and "did you mean" not in err


def test_yaml_errors_keep_line_and_column(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("model_name: local:tiny-llama\ndataset_path: data/sample.jsonl\nseq_len: [128\nmethod: lora\n")
    code, _, err = run(capsys, "estimate", str(spec))
    assert code == 2 and "not valid YAML: line 4, column" in err and len(err.strip().splitlines()) == 1


def test_an_unknown_gpu_in_a_spec_names_the_catalog(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("model_name: local:tiny-llama\ndataset_path: data/sample.jsonl\ntarget_gpu: tpu-v5\n")
    code, _, err = run(capsys, "estimate", str(spec))
    assert code == 2 and "unknown GPU 'tpu-v5'" in err and "a10g" in err and "h100" in err
