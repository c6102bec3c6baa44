"""One `aegis train`: the host reads the training data once and loads the tokenizer once; the script reads its
copy once; the script is rendered once per attempt (and once for pre-flight's check of it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

import tools.job.attempt
import tools.run.smoke
from agent.cli import main
from agent.cli.options import EXIT_OK
from tools.inputs.tokenizer import load_tokenizer
from tools.run import sandbox

ROOT = Path(__file__).resolve().parents[2]
DATASET = (ROOT / "data" / "sample.jsonl").resolve()
# Installed in the training subprocess through PYTHONPATH: counts the opens of its data copy, writes them at exit.
SITECUSTOMIZE = """
import atexit, os, sys
_opens = []
def _hook(event, args):
    if event == "open" and isinstance(args[0], str) and "/data/" in args[0] and os.path.basename(args[0]) == "train.jsonl":
        _opens.append(args[0])
sys.addaudithook(_hook)
if sys.argv and sys.argv[0].endswith("train.py") and "/attempt-" in sys.argv[0]:  # the attempt, not the probe
    atexit.register(lambda: open(os.environ["AEGIS_TEST_OPENS"], "a").write(f"{len(_opens)}\\n"))
"""


class Counter:
    def __init__(self) -> None:
        self.active = False
        self.dataset_opens = 0

    def __call__(self, event: str, args: tuple) -> None:
        if self.active and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            path = os.fsdecode(args[0])
            if os.path.realpath(path) == str(DATASET) and not _building_tiny_llama():
                self.dataset_opens += 1


def _building_tiny_llama() -> bool:
    """The bundled tiny model is built from data/*.jsonl (sample.jsonl among them) and checks that corpus once a
    process: that open is the model's, not a read of the training data."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.endswith("tools/inputs/local_models.py"):
            return True
        frame = frame.f_back
    return False


COUNTER = Counter()
sys.addaudithook(COUNTER)


@pytest.mark.slow
def test_one_train_reads_the_data_once_and_loads_the_tokenizer_once(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(ROOT)]))
    monkeypatch.setenv("AEGIS_TEST_OPENS", str(tmp_path / "script-opens.txt"))
    # The counter is installed through PYTHONPATH, which the sandbox never passes: this test runs unisolated and
    # hands the two variables to the script on purpose (what it measures is the reads, not the isolation).
    monkeypatch.setenv("AEGIS_BWRAP", str(tmp_path / "no-bwrap"))
    real_env = sandbox.sandbox_env
    monkeypatch.setattr(
        sandbox,
        "sandbox_env",
        lambda home, threads: real_env(home, threads) | {k: os.environ[k] for k in ("PYTHONPATH", "AEGIS_TEST_OPENS")},
    )
    loads: list[str] = []
    real_load = AutoTokenizer.from_pretrained.__func__

    def counted_load(cls, source, *args, **kwargs):  # noqa: ANN001, ANN202
        loads.append(str(source))
        return real_load(cls, source, *args, **kwargs)

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", classmethod(counted_load))
    renders: list[str] = []
    for module in (tools.job.attempt, tools.run.smoke):
        real_render = module.render_script

        def counted_render(*args, _real=real_render, **kwargs):  # noqa: ANN002, ANN003, ANN202
            renders.append(str(args[1]))
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, "render_script", counted_render)
    load_tokenizer.cache_clear()
    COUNTER.active, COUNTER.dataset_opens = True, 0
    try:
        code = main(["train", str(ROOT / "data/specs/sample_lora.yaml"), "--yes"])
    finally:
        COUNTER.active = False
    assert code == EXIT_OK, f"the sample run ended with exit code {code}, not succeeded"
    attempts = [r for r in renders if "/attempt-" in r]
    assert COUNTER.dataset_opens == 1, COUNTER.dataset_opens
    assert len(loads) == 1, loads
    assert len(attempts) == 1 and len(renders) == 2, renders  # the attempt's, and pre-flight's check of the script
    assert (tmp_path / "script-opens.txt").read_text().split() == ["1"]
