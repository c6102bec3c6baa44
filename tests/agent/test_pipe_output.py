"""Issue 26: output piped to a file or a CI log keeps whole lines, and libraries' noise stays out of it.

Written to a pipe, the CLI cuts no line at 80 columns (tables included), prints progress as plain lines at a
modest rate instead of redrawn bars, and keeps third-party warnings and progress bars out of stdout and stderr:
the warnings land in the aegis log instead.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

from agent.cli.output import LOG_NAME, TrainingProgress, WholeLineConsole
from tests.processes import ROOT, aegis, aegis_env
from tools.evals.progress import EVAL_EVENT
from tools.inputs.local_models import TINY_LLAMA, resolve_model

NOISY_COMMAND = textwrap.dedent(
    """
    import logging, sys, warnings
    import agent.cli as cli

    build_parser = cli.build_parser

    def noisy_build_parser():
        # what transformers, the Hub and LangGraph do while a command runs
        warnings.warn_explicit(
            "`torch_dtype` is deprecated! Use `dtype` instead!", FutureWarning,
            "transformers/modeling_utils.py", 1, module="transformers.modeling_utils",
        )
        logging.getLogger("langgraph.checkpoint.serde.jsonplus").warning(
            "Deserializing unregistered type tools.core.status.Decision from checkpoint."
        )
        from huggingface_hub.utils import tqdm as hub_tqdm
        from transformers.utils import logging as hf_logging
        for _ in hub_tqdm(range(3), desc="Fetching files"):
            pass
        for _ in hf_logging.tqdm(range(3), desc="Loading weights"):
            pass
        return build_parser()

    cli.build_parser = noisy_build_parser
    sys.exit(cli.main(["runs"]))
    """
)


def test_a_piped_table_keeps_every_line_whole(tmp_path: Path) -> None:
    done = aegis(aegis_env(tmp_path), "estimate", "data/specs/sample_lora.yaml", "--gpu", "a10g", timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "…" not in done.stdout  # Rich's ellipsis: a cell or a line cut to fit 80 columns
    rows = [line for line in lines if line.startswith("│")]
    assert rows and all(line.rstrip().endswith("│") for line in rows)  # every row closed: nothing cut off
    assert max(map(len, lines)) > 80  # the long values (where it runs, the notes) kept on their rows
    assert all(line.split("│")[1].strip() for line in rows)  # no value wrapped onto a line of its own


def test_third_party_warnings_go_to_the_log_and_their_bars_nowhere(tmp_path: Path) -> None:
    env = aegis_env(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", NOISY_COMMAND], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    shown = done.stdout + done.stderr
    assert done.returncode == 0, shown
    assert "no runs yet" in done.stdout.lower()
    for noise in ("FutureWarning", "torch_dtype", "Deserializing", "Fetching files", "Loading weights", "it/s", "%|"):
        assert noise not in shown, noise
    log = (Path(env["AEGIS_HOME"]) / "logs" / LOG_NAME).read_text(encoding="utf-8")
    assert "FutureWarning" in log and "torch_dtype" in log and "Deserializing unregistered type" in log


def test_progress_in_a_pipe_is_plain_lines_at_a_modest_rate() -> None:
    out = io.StringIO()
    progress = TrainingProgress(WholeLineConsole(file=out))
    with progress:
        for step in range(1, 101):
            progress.update({"type": "step", "step": step, "total_steps": 100, "loss": 2.5, "tokens_per_s": 120})
        for done in range(11):
            progress.update(
                {"type": EVAL_EVENT, "phase": "heldout", "label": "held-out loss", "done": done, "total": 10}
            )
    lines = out.getvalue().splitlines()
    assert lines == [
        "train 1/100 loss 2.5000 120 tok/s",
        "train 100/100 loss 2.5000 120 tok/s",
        "evals held-out loss 0/10 0 s in evals",
        "evals held-out loss 10/10 0 s in evals",
    ]


def test_building_a_local_model_shows_no_library_progress_bar(tmp_path: Path, monkeypatch, capfd) -> None:
    monkeypatch.setenv("AEGIS_MODEL_CACHE", str(tmp_path / "models"))
    built = resolve_model(TINY_LLAMA)
    out, err = capfd.readouterr()
    assert built.built_now
    assert "Writing model shards" not in out + err and "it/s" not in out + err
    assert Path(built.path).with_name(Path(built.path).name + ".build.log").is_file()  # where its output went
