"""Talk to a trained run and ship it: `aegis generate`, `aegis chat-model`, `aegis export [--merge]`, the model card."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from agent.cli import main
from tools.inputs.local_models import resolve_model
from tools.report.provenance import provenance
from tools.use.card import base_model_id, card_facts, render_card
from tools.use.model_worker import generate_reply, load_model
from tools.use.protocol import GenerationSettings, LoadRequest
from tools.use.runs import find_run

QUESTION = "My printer on floor 3 is offline. What should I do?"


def in_process(run_id: str):
    """The run's model loaded in this test's own process, to check what the sandboxed worker answered."""
    run = find_run(run_id)
    base = resolve_model(run.require_spec().model_name).path
    return load_model(LoadRequest(final_dir=str(run.final_dir()), base_path=base))


def greedy(model, tokenizer, prompt: str, tokens: int = 16) -> str:
    messages = [{"role": "user", "content": prompt}]
    return generate_reply(model, tokenizer, messages, GenerationSettings(max_new_tokens=tokens))


def test_generate_streams_the_tuned_models_greedy_answer(run_id, capsys):
    assert main(["generate", run_id, QUESTION, "--max-new-tokens", "16"]) == 0
    printed = capsys.readouterr().out.strip()
    tuned = in_process(run_id)
    assert printed and printed == greedy(tuned.trained, tuned.tokenizer, QUESTION)
    with tuned.base() as base:  # the adapter disabled: the model it was tuned from answers otherwise
        assert greedy(base, tuned.tokenizer, QUESTION) != printed


def test_generate_with_base_shows_both_answers(run_id, capsys):
    assert main(["generate", "latest", QUESTION, "--max-new-tokens", "8", "--base"]) == 0
    captured = capsys.readouterr()
    assert "fine-tuned:" in captured.err and "base model:" in captured.err
    assert len([line for line in captured.out.splitlines() if line.strip()]) >= 1


def test_chat_model_keeps_the_conversation_until_reset(run_id, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{QUESTION}\nAnd then?\n/reset\n{QUESTION}\n/exit\n"))
    assert main(["chat-model", run_id, "--max-new-tokens", "8"]) == 0
    answers = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(answers) == 3
    assert answers[0] == answers[2]  # after /reset the same question is asked afresh: the same greedy answer


def test_export_merge_loads_without_peft_and_answers_as_the_adapter(run_id, tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path / "shipped"
    assert main(["export", run_id, "--merge", "--out", str(out)]) == 0
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    assert not hasattr(merged, "peft_config")
    tuned = in_process(run_id)
    assert greedy(merged, tuned.tokenizer, QUESTION, 24) == greedy(tuned.trained, tuned.tokenizer, QUESTION, 24)
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "local:tiny-llama"  # no cache path of this machine
    card = (out / "README.md").read_text()
    digest = find_run(run_id).job.data_digest
    assert digest and len(digest) == 64 and f"`{digest}`" in card
    assert json.loads((out / "aegis_run.json").read_text())["data_digest"] == digest
    for heading in (
        "## Data",
        "## Training spec",
        "## Evaluation (before → after)",
        "## Cost and time",
        "## Provenance",
    ):
        assert heading in card
    assert provenance().libraries["peft"] in card and "merged weights" in card


def test_adapter_export_is_self_contained(run_id, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert main(["export", run_id]) == 0
    out = tmp_path / "runs" / run_id / "export"
    config = json.loads((out / "adapter_config.json").read_text())
    assert not Path(config["base_model_name_or_path"]).is_absolute()
    assert {"README.md", "aegis_run.json", "adapter_model.safetensors", "tokenizer_config.json"} <= {
        p.name for p in out.iterdir()
    }
    base = AutoModelForCausalLM.from_pretrained(resolve_model("local:tiny-llama").path)
    assert isinstance(PeftModel.from_pretrained(base, str(out)), PeftModel)
    # a second export into the same folder is refused unless asked for, then replaces it whole
    assert main(["export", run_id]) == 2
    assert main(["export", run_id, "--force"]) == 0


def test_card_names_the_hub_id_of_a_local_alias(run_id, tmp_path):
    """The demo's local:smollm2-135m-instruct is HuggingFaceTB/SmolLM2-135M-Instruct on the card and the adapter."""
    assert base_model_id("local:smollm2-135m-instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert base_model_id("local:tiny-llama") is None
    assert base_model_id("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"
    path = tmp_path / "runs" / run_id / "job.json"
    job = json.loads(path.read_text())
    job["spec"]["model_name"] = "local:smollm2-135m-instruct"
    path.write_text(json.dumps(job))
    card = render_card(card_facts(find_run(run_id), provenance()))
    assert card.startswith("---\n") and "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
    assert "dequantized" in card  # the offline copy the adapter was trained on, said plainly


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["generate", "no-such-run", "hi"], "no run 'no-such-run'"),
        (["generate", "latest", "  "], "the prompt is empty"),
        (["export", "no-such-run"], "`aegis runs` lists them"),
        (["export", "latest", "--gguf"], "llama.cpp"),
        (["runs", "compare", "latest", "nope"], "no run 'nope'"),
        (["push", "latest", "not a repo"], "not a Hub repository id"),
        (["push", "latest", "justaname"], "has no owner"),
        (["generate", "latest", "hi", "--temperature", "9"], "between 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run_id, capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2  # rich wraps long lines only at the terminal's width


def test_a_run_without_a_model_says_so(run_id, tmp_path, capsys):
    final = tmp_path / "runs" / run_id / "attempt-1" / "output" / "final"
    for item in final.iterdir():
        item.unlink() if item.is_file() else None
    final.rename(final.with_name("gone"))
    assert main(["generate", run_id, "hi"]) == 2
    assert "trained model is missing" in capsys.readouterr().err
