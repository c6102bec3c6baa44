"""Bad input and broken storage: one line naming what is wrong, exit 2 (input) or 1 (a store or disk), never a
traceback, and nothing already written is lost."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

import tools.core.runlog
from agent.cli import main
from tools.core.runlog import RunFolder

pytestmark = pytest.mark.usefixtures("gpu_cloud")  # GPU targets run on a stand-in for Modal's cloud

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample.jsonl"
GOOD = f"model_name: local:tiny-llama\ndataset_path: {SAMPLE}\nseq_len: 128\nmax_steps: 2\ntarget_gpu: cpu\n"


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return code, err


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def spec_file(tmp_path: Path, text: str | bytes, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace(f"dataset_path: {SAMPLE}", 'dataset_path: "data/sa\\0mple.jsonl"'), "control character"),
        (GOOD + "seed: 99999999999999999999999999999\n", "seed"),
        (GOOD.replace("model_name: local:tiny-llama", "model_name: [a, b]"), "model_name"),
        (GOOD + "learning_rate: .nan\n", "learning_rate"),
        (GOOD + "lora_target_modules: {q_proj: 1}\n", "lora_target_modules"),
        ("model_name: x\n  dataset_path: [unclosed\n", "line 2, column"),
        (b"model_name: \xff\xfe\n", "not UTF-8"),
        ("- just\n- a list\n", "mapping of field"),
    ],
)
def test_a_bad_spec_file_is_one_line_and_exit_2(tmp_path, capsys, text, expected):
    code, err = run(capsys, "estimate", spec_file(tmp_path, text))
    assert code == 2 and expected in one_line(err)


def test_a_folder_named_as_the_spec_is_one_line(tmp_path, capsys):
    (tmp_path / "spec.yaml").mkdir()
    code, err = run(capsys, "estimate", str(tmp_path / "spec.yaml"))
    assert code == 2 and "not a file" in one_line(err)


def dataset_spec(tmp_path: Path, monkeypatch, content: bytes | None, *, folder: bool = False) -> str:
    monkeypatch.setenv("AEGIS_DATA_DIRS", str(tmp_path))
    data = tmp_path / "rows.jsonl"
    if folder:
        data.mkdir()
    else:
        data.write_bytes(content or b"")
    return spec_file(tmp_path, GOOD.replace(str(SAMPLE), str(data)))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"text": "caf\xe9"}\n', "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
        (b'{"text": "ok"}\n{"text": \n', "line 2 is not valid JSON"),
    ],
)
def test_a_bad_dataset_is_one_line(tmp_path, monkeypatch, capsys, content, expected):
    code, err = run(capsys, "estimate", dataset_spec(tmp_path, monkeypatch, content))
    assert code == 2 and expected in one_line(err)


def test_a_folder_named_as_the_dataset_is_one_line(tmp_path, monkeypatch, capsys):
    code, err = run(capsys, "estimate", dataset_spec(tmp_path, monkeypatch, None, folder=True))
    assert code == 2 and "rows.jsonl" in one_line(err)


def test_a_dataset_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch, capsys):
    spec = dataset_spec(tmp_path, monkeypatch, b'{"text": "a row"}\n' * 200_000)
    monkeypatch.setenv("AEGIS_MAX_DATASET_MB", "1")
    reads: list[int] = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    code, err = run(capsys, "estimate", spec)
    assert code == 2 and "over the limit of 1 MB" in one_line(err) and "AEGIS_MAX_DATASET_MB" in err
    assert not reads  # not one byte of it was read


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("AEGIS_MAX_BUDGET_USD", "nan", "AEGIS_MAX_BUDGET_USD"),
        ("AEGIS_SOFT_THRESHOLD_USD", "[1, 2]", "AEGIS_SOFT_THRESHOLD_USD"),
        ("AEGIS_MAX_LOSS_SHARE", "2", "AEGIS_MAX_LOSS_SHARE"),
        ("AEGIS_LOCAL_TIMEOUT_S", "soon", "AEGIS_LOCAL_TIMEOUT_S"),
        ("AEGIS_LOCAL_PRICE_USD_PER_HOUR", "free", "AEGIS_LOCAL_PRICE_USD_PER_HOUR"),
        ("AEGIS_MAX_DATASET_MB", "-1", "AEGIS_MAX_DATASET_MB"),
    ],
)
def test_a_bad_setting_is_one_line(tmp_path, monkeypatch, capsys, var, value, expected):
    monkeypatch.setenv(var, value)
    code, err = run(capsys, "estimate", spec_file(tmp_path, GOOD))
    assert code == 2 and expected in one_line(err)


def test_a_budget_file_with_a_list_for_a_number_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AEGIS_BUDGET_FILE", spec_file(tmp_path, "max_budget_usd: [1, 2]\n", "budget.yaml"))
    code, err = run(capsys, "train", spec_file(tmp_path, GOOD), "--yes")
    assert code == 2 and "max_budget_usd" in one_line(err)


@pytest.mark.parametrize(
    "argv",
    [
        ["resume", "../../etc/passwd", "--approve"],
        ["resume", "x\x00y", "--cancel"],
        ["train", "spec.yaml", "--max-retries", "99999999999999999999999"],
        ["train", "spec.yaml", "--max-budget", "inf"],
        ["run", "hello", "--approve-up-to", "-3"],
        ["run", "hello", "--memory-limit-mb", "12abc"],
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(capsys, argv):
    code, err = run(capsys, *argv)
    assert code == 2 and one_line(err).startswith("error:")


def test_a_corrupt_thread_store_is_one_line_naming_the_file(tmp_path, capsys):
    store = tmp_path / "runs" / "checkpoints.sqlite"
    store.parent.mkdir(parents=True)
    store.write_bytes(b"not sqlite at all" * 64)
    for argv in (["run", "LoRA fine-tune local:tiny-llama on data/sample.jsonl"], ["resume", "t1", "--approve"]):
        code, err = run(capsys, *argv)
        assert code == 1 and str(store) in one_line(err) and "move it aside" in err
    assert store.read_bytes() == b"not sqlite at all" * 64  # left for the person to look at


def test_a_corrupt_spend_store_stops_everything_in_one_line(tmp_path, capsys):
    store = tmp_path / "aegis-home" / "spend.sqlite"
    store.parent.mkdir(parents=True)
    store.write_bytes(b"\x00" * 4096)
    code, err = run(capsys, "train", spec_file(tmp_path, GOOD), "--yes")
    assert code == 1 and "spend store" in one_line(err) and str(store) in err
    assert not list((tmp_path / "runs").glob("*/attempt-*"))


def test_a_torn_line_in_the_ledger_of_actuals_is_skipped(tmp_path, capsys, caplog):
    ledger = tmp_path / "aegis-home" / "actuals.jsonl"
    ledger.parent.mkdir(parents=True)
    ledger.write_text('{"run_id": "r1", "attempt": 1, "gpu": "cpu", "sta')  # cut off mid-write
    code, _ = run(capsys, "estimate", spec_file(tmp_path, GOOD), "--json")
    assert code == 0 and "skipped line 1" in caplog.text


def test_a_torn_event_line_in_a_paused_thread_does_not_stop_the_answer(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AEGIS_SOFT_THRESHOLD_USD", "0")
    request = "LoRA fine-tune local:tiny-llama on data/sample.jsonl with batch size 4, seq_len 128, for 3 steps on a10g"
    assert main(["run", request]) == 3
    out = capsys.readouterr().out
    thread = next(line.split()[-1] for line in out.splitlines() if line.startswith("thread:"))
    events = tmp_path / "runs" / thread / "events.jsonl"
    with events.open("a") as fh:
        fh.write('{"timestamp": "2026-11-30T10:00:00Z", "phase": "tr')
    code = main(["resume", thread, "--cancel"])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in out + err
    report = [line.split("Report:")[1].strip() for line in out.splitlines() if line.startswith("Report:")][-1]
    assert Path(report).is_file() and "cancelled" in Path(report).read_text()


def test_a_full_disk_leaves_the_event_log_whole_and_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    real_write = os.write
    writes = {"events": 0}

    def disk_fills_up(fd: int, data: bytes) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.endswith("events.jsonl"):
            writes["events"] += 1
            if writes["events"] > 6:  # some events fit; then half a line, then the disk is full
                real_write(fd, bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(tools.core.runlog.os, "write", disk_fills_up)
    code, err = run(capsys, "train", spec_file(tmp_path, GOOD), "--yes")
    assert code == 1 and "No space left on device" in one_line(err) and "free some disk space" in err
    folder = RunFolder(next((tmp_path / "runs").iterdir()))
    lines = folder.events_path.read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line) for line in lines)  # the torn half was cut back off
