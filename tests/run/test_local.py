"""The local sandbox, end to end: real runs of the rendered script on a tiny model, and real failures.

Every failure here is caused for real (a memory cap below the need, an absurd learning rate, a
dataset with no text, qlora on a CPU), never by a testing knob in the script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from tools.core.spec import TrainingSpec
from tools.run.failures import EXIT_CODES
from tools.run.local import run_local
from tools.run.render import RenderedScript, render_script
from tools.run.sandbox import sandbox_env

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
ANSWERS = ["The capital of France is Paris.", "Hello world, how are you today?", "The quick brown fox jumps."]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer LlamaForCausalLM with a BPE tokenizer and a chat template, built here (no hub)."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([*ANSWERS, "What is question number 1 2 3?"] * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        # At the default 0.02 a frozen random lm_head caps every logit near 1, so LoRA could barely lower
        # the loss; 0.1 leaves room to learn, as a pretrained head would.
        initializer_range=0.1,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def chat_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Repetitive prompt/completion pairs: a model can learn them in a few dozen steps."""
    path = tmp_path_factory.mktemp("data") / "chat.jsonl"
    rows = [{"prompt": f"What is question number {i % 3}?", "completion": ANSWERS[i % 3]} for i in range(60)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _run(
    tmp_path: Path,
    model: Path,
    data: Path,
    *,
    timeout_s: float = 120,
    memory_limit_mb: int | None = None,
    extra: dict | None = None,
    on_progress=None,
    **fields,
):
    fields = {"seq_len": 64, "micro_batch_size": 4, **fields}
    spec = TrainingSpec(model_name="local:tiny-llama", dataset_path=str(data), target_gpu="cpu", **fields)
    rendered = render_script(
        spec, tmp_path, model_path=str(model), dataset_path=data, eval_dataset_path=None, extra=extra
    )
    result = run_local(
        spec, tmp_path, rendered, timeout_s=timeout_s, memory_limit_mb=memory_limit_mb, on_progress=on_progress
    )
    return rendered, result


def _records(rendered: RenderedScript) -> list[dict]:
    return [json.loads(line) for line in rendered.metrics_path.read_text().splitlines()]


def test_lora_run_learns_and_saves_the_adapter(tmp_path: Path, tiny_model: Path, chat_data: Path) -> None:
    seen: list[dict] = []
    rendered, result = _run(
        tmp_path,
        tiny_model,
        chat_data,
        method="lora",
        learning_rate=1e-2,
        max_steps=30,
        num_epochs=5,
        on_progress=seen.append,
    )
    assert result.status == "succeeded", result.error_message
    assert result.failure_class is None and result.exit_code == 0
    records = _records(rendered)
    kinds = [r["type"] for r in records]
    assert kinds[0] == "start" and kinds[1] == "eval" and kinds[-2:] == ["eval", "end"]
    steps = [r for r in records if r["type"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, 31)) and seen == steps
    step_keys = {
        "step",
        "total_steps",
        "epoch",
        "loss",
        "lr",
        "tokens",
        "tokens_per_s",
        "elapsed_s",
        "eta_s",
        "peak_mem_mb",
    }
    assert all(step_keys <= set(r) for r in steps)
    assert records[0]["total_steps"] == 30 and records[0]["trainable_params"] < records[0]["total_params"]
    # The loss really falls on data this repetitive.
    assert result.final_train_loss < 0.75 * result.initial_train_loss
    assert result.final_eval_loss < 0.75 * result.initial_eval_loss
    assert result.loss_curve == [(r["step"], r["loss"]) for r in steps]
    assert result.steps_completed == result.total_steps == 30
    assert result.train_tokens == steps[-1]["tokens"] > 0 and result.tokens_per_s > 0
    assert result.peak_memory_mb > 50 and result.duration_s > 0 and result.actual_cost_usd == 0.0
    final = rendered.output_dir / "final"
    assert (final / "adapter_config.json").is_file() and (final / "adapter_model.safetensors").is_file()
    assert (final / "tokenizer.json").is_file()
    assert json.loads((rendered.output_dir / "result.json").read_text())["steps"] == 30
    heldout = (rendered.output_dir / "heldout.jsonl").read_text().splitlines()
    assert len(heldout) == 6 and "completion" in json.loads(heldout[0])
    assert Path(result.log_path).read_text().count("[aegis]") >= 3


def test_full_finetune_without_packing_saves_the_model(tmp_path: Path, tiny_model: Path, chat_data: Path) -> None:
    rendered, result = _run(
        tmp_path, tiny_model, chat_data, method="full_finetune", learning_rate=1e-3, max_steps=3, packing=False
    )
    assert result.status == "succeeded", result.error_message
    start = _records(rendered)[0]
    assert start["trainable_params"] == start["total_params"] and start["packing"] is False
    # Unpacked rows are padded to seq_len: every step sees micro_batch_size * seq_len positions.
    assert result.train_tokens < 3 * 4 * 64
    assert (rendered.output_dir / "final" / "model.safetensors").is_file()


def test_checkpoint_then_resume_replays_the_same_steps(tmp_path: Path, tiny_model: Path, chat_data: Path) -> None:
    common = {"method": "lora", "learning_rate": 5e-3, "max_steps": 8, "lora_dropout": 0.0}
    first, full = _run(tmp_path / "a", tiny_model, chat_data, extra={"checkpoint_every": 4}, **common)
    assert full.status == "succeeded", full.error_message
    checkpoint = first.output_dir / "checkpoints" / "step-4"
    assert json.loads((checkpoint / "state.json").read_text())["step"] == 4
    second, resumed = _run(tmp_path / "b", tiny_model, chat_data, extra={"resume_from": str(checkpoint)}, **common)
    assert resumed.status == "succeeded", resumed.error_message
    assert [step for step, _ in resumed.loss_curve] == [5, 6, 7, 8]
    for (_, want), (_, got) in zip(full.loss_curve[4:], resumed.loss_curve, strict=True):
        assert got == pytest.approx(want, rel=1e-3)


def test_memory_limit_below_need_is_oom(tmp_path: Path, tiny_model: Path, chat_data: Path) -> None:
    # 54 rows padded to 2048 tokens in one micro-batch: the attention scores alone need ~1.7 GB.
    _, result = _run(
        tmp_path,
        tiny_model,
        chat_data,
        memory_limit_mb=1000,
        method="lora",
        micro_batch_size=64,
        seq_len=2048,
        packing=False,
        max_steps=1,
    )
    assert result.status == "failed" and result.failure_class == "oom", result.error_message
    assert result.exit_code == EXIT_CODES["oom"]
    assert "allocate memory" in result.error_message


def test_absurd_learning_rate_diverges(tmp_path: Path, tiny_model: Path, chat_data: Path) -> None:
    rendered, result = _run(tmp_path, tiny_model, chat_data, method="lora", learning_rate=1e6, max_steps=30)
    assert result.status == "failed" and result.failure_class == "nan_loss", result.error_message
    assert result.exit_code == EXIT_CODES["nan_loss"]
    end = _records(rendered)[-1]
    assert end["type"] == "end" and end["status"] == "failed" and end["reason"] == "nan_loss"
    assert 0 < result.steps_completed < 30 and end["step"] == result.steps_completed


@pytest.mark.slow
def test_fp16_overflow_gives_a_nan_loss(tmp_path: Path, tiny_model: Path, chat_data: Path) -> None:
    _, result = _run(tmp_path, tiny_model, chat_data, method="lora", learning_rate=1e6, precision="fp16", max_steps=30)
    assert result.failure_class == "nan_loss"
    assert "loss became non-finite" in result.error_message


def test_timeout_kills_the_run(tmp_path: Path, tiny_model: Path, chat_data: Path) -> None:
    started = time.monotonic()
    _, result = _run(tmp_path, tiny_model, chat_data, timeout_s=1.5, max_steps=1000)
    assert result.status == "failed" and result.failure_class == "timeout"
    assert time.monotonic() - started < 15
    assert "timed out after 1.5s" in result.error_message


def test_dataset_without_text_is_bad_data(tmp_path: Path, tiny_model: Path) -> None:
    data = tmp_path / "numbers.jsonl"
    data.write_text("".join(json.dumps({"id": i, "score": i * 0.5}) + "\n" for i in range(10)), encoding="utf-8")
    _, result = _run(tmp_path / "run", tiny_model, data, max_steps=2)
    assert result.failure_class == "bad_data" and result.exit_code == EXIT_CODES["bad_data"]
    assert "no usable text column" in result.error_message and "score" in result.error_message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_qlora_on_cpu_is_unsupported(tmp_path: Path, tiny_model: Path, chat_data: Path) -> None:
    _, result = _run(tmp_path, tiny_model, chat_data, method="qlora", max_steps=2)
    assert result.failure_class == "unsupported" and result.exit_code == EXIT_CODES["unsupported"]
    assert "qlora needs a CUDA GPU" in result.error_message


# -- the sandbox itself, with small stand-in scripts ----------------------------------------------


def _script(tmp_path: Path, body: str) -> tuple[TrainingSpec, RenderedScript]:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(body), encoding="utf-8")
    config = {"output_dir": str(tmp_path / "output"), "metrics_path": str(tmp_path / "metrics.jsonl"), "device": "cpu"}
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    spec = TrainingSpec(model_name="m", dataset_path="d.jsonl", target_gpu="cpu")
    return spec, RenderedScript(script_path=script, config_path=config_path, config=config)


def test_the_sandbox_environment_is_an_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "OPENAI_API_KEY": "sk",
        "MY_SERVICE_TOKEN": "t",
        "AWS_REGION": "r",
        "SSH_AUTH_SOCK": "/run/agent",
        "PYTHONPATH": "/elsewhere",
        "LD_PRELOAD": "/evil.so",
        "OPENBLAS_CORETYPE": "Haswell",
    }.items():
        monkeypatch.setenv(name, value)
    env = sandbox_env("/tmp/home", 2)
    assert env["HOME"] == "/tmp/home" and env["HF_HUB_OFFLINE"] == "1" and env["OMP_NUM_THREADS"] == "2"
    assert env["ARROW_DEFAULT_MEMORY_POOL"] == "system" and env["OPENBLAS_CORETYPE"] == "Haswell"
    for name in ("OPENAI_API_KEY", "MY_SERVICE_TOKEN", "AWS_REGION", "SSH_AUTH_SOCK", "PYTHONPATH", "LD_PRELOAD"):
        assert name not in env


def test_only_the_allow_list_reaches_the_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-123")
    monkeypatch.setenv("AEGIS_TEST_SECRET", "hunter2")
    monkeypatch.setenv("AEGIS_NOT_LISTED", "yes")
    spec, rendered = _script(
        tmp_path,
        """
        import json, os
        json.dump(dict(os.environ), open("env.json", "w"))
        """,
    )
    result = run_local(spec, tmp_path, rendered, timeout_s=30, memory_limit_mb=None)
    assert result.exit_code == 0
    env = json.loads((tmp_path / "env.json").read_text())
    assert "OPENAI_API_KEY" not in env and "AEGIS_TEST_SECRET" not in env and "AEGIS_NOT_LISTED" not in env
    assert "PATH" in env and env["HOME"] != os.environ["HOME"]
    assert "sk-live-123" not in json.dumps(env)


def _gone(marker: str) -> bool:
    """No live process carries ``marker`` in its command line (pids inside the sandbox are not this machine's)."""
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(proc.info["cmdline"] or ()):
            return False
    return True


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    spec, rendered = _script(
        tmp_path,
        f"""
        import subprocess, time
        child = subprocess.Popen([{sys.executable!r}, "-c", "import time; time.sleep(300)", "{tmp_path}-grandchild"])
        time.sleep(300)
        """,
    )
    result = run_local(spec, tmp_path, rendered, timeout_s=2, memory_limit_mb=None)
    assert result.failure_class == "timeout"
    grandchild = f"{tmp_path}-grandchild"
    deadline = time.monotonic() + 5
    while not _gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(grandchild)


def test_killing_the_process_that_ran_it_stops_the_run(tmp_path: Path) -> None:
    # The smoke run and the CPU probe call run_local with no watchdog of their own: SIGKILL of aegis in the
    # middle of one must not leave its training behind.
    spec, rendered = _script(
        tmp_path,
        """
        import os, time
        open("script.pid", "w").write(str(os.getpid()))
        time.sleep(300)
        """,
    )
    (tmp_path / "spec.json").write_text(spec.model_dump_json(), encoding="utf-8")
    parent = subprocess.Popen(
        [sys.executable, "-c", RUN_FROM_ANOTHER_PROCESS, str(tmp_path)], cwd=Path(__file__).resolve().parents[2]
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "script.pid").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    script = str(tmp_path / "train.py")
    parent.kill()
    parent.wait(timeout=10)
    deadline = time.monotonic() + 15
    while not _gone(script) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(script)


RUN_FROM_ANOTHER_PROCESS = """
import sys
from pathlib import Path
from tools.core.spec import TrainingSpec
from tools.run.local import run_local
from tools.run.render import RenderedScript
folder = Path(sys.argv[1])
spec = TrainingSpec.model_validate_json((folder / "spec.json").read_text())
rendered = RenderedScript.from_paths(folder / "train.py", folder / "config.json")
run_local(spec, folder, rendered, timeout_s=300, memory_limit_mb=None)
"""


def test_ctrl_c_in_the_parent_interrupts_the_run(tmp_path: Path) -> None:
    spec, rendered = _script(
        tmp_path,
        """
        import json, os, time
        with open("metrics.jsonl", "a") as fh:
            fh.write(json.dumps({"type": "start", "total_steps": 10}) + "\\n")
            fh.write(json.dumps({"type": "step", "step": 1, "total_steps": 10, "loss": 2.5, "tokens": 64}) + "\\n")
        open("script.pid", "w").write(str(os.getpid()))
        time.sleep(300)
        """,
    )

    def press_ctrl_c(step: dict) -> None:
        raise KeyboardInterrupt

    started = time.monotonic()
    result = run_local(spec, tmp_path, rendered, timeout_s=60, memory_limit_mb=None, on_progress=press_ctrl_c)
    assert time.monotonic() - started < 20
    assert result.status == "interrupted" and result.failure_class == "interrupted"
    assert result.loss_curve == [(1, 2.5)] and result.steps_completed == 1
    assert _gone(str(tmp_path / "train.py"))


def test_data_limit_is_set_in_the_child(tmp_path: Path) -> None:
    spec, rendered = _script(
        tmp_path,
        """
        import resource
        open("limit.txt", "w").write(str(resource.getrlimit(resource.RLIMIT_DATA)[0]))
        """,
    )
    run_local(spec, tmp_path, rendered, timeout_s=30, memory_limit_mb=2048)
    assert int((tmp_path / "limit.txt").read_text()) == 2048 * 2**20
    assert os.path.exists(tmp_path / "train.log")
