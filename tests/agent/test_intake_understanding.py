"""Issue 17: the intake never guesses silently. What it did not map to a field, it asks about; what it did,
it shows, marking which fields came from the person and which are defaults.

The requests are in the shape of the issue's reports but none is one of them: other accelerators, other
languages, other units.
"""

from __future__ import annotations

import pytest

from agent.graph import read_request
from agent.intake import Source, build_spec, field_sources, parse_request, sources_text
from agent.session import AgentSession
from tools.core.spec import BudgetPolicy

pytestmark = pytest.mark.usefixtures("gpu_cloud")  # GPU targets run on a stand-in for Modal's cloud

ASK = BudgetPolicy(max_budget_usd=5.0, soft_threshold_usd=0.0, allow_auto_approve=True)


@pytest.mark.parametrize(
    ("text", "unknown"),
    [
        ("LoRA fine-tune gpt2 on data/sample.jsonl on a v100", "v100"),
        ("lora gpt2 data/sample.jsonl on an RTX 2080 Ti, 1 epoch", "RTX 2080"),
        ("LoRA fine-tune gpt2 on data/sample.jsonl using Trainium", "Trainium"),
        ("LoRA fine-tune gpt2 on data/sample.jsonl on an MI300X", "MI300X"),
        ("LoRA fine-tune gpt2 on data/sample.jsonl on a tpu-v4 pod", "tpu-v4"),
        ("LoRA fine-tune gpt2 on data/sample.jsonl on a Gaudi2", "Gaudi2"),
    ],
)
def test_an_accelerator_the_catalog_lacks_is_named_not_defaulted(text, unknown):
    request = parse_request(text)
    assert request.target_gpu is None  # never the default a10g
    assert any(unknown in item and "accelerator" in item for item in request.not_understood)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Bitte trainiere gpt2 mit LoRA auf data/sample.jsonl, 4 Epochen, auf einer L4.", ["4 Epochen", "bitte"]),
        ("Affiner gpt2 sur data/sample.jsonl pendant 3 époques sur une l4", ["3 époques", "affiner"]),
        ("Entrena gpt2 con LoRA en data/sample.jsonl durante 2 épocas en una a10g", ["2 épocas", "entrena"]),
        ("LoRA fine-tune gpt2 on data/sample.jsonl 在 T4 上训练两个周期", ["在"]),
    ],
)
def test_other_languages_are_asked_about_not_read_as_defaults(text, words):
    request = parse_request(text)
    assert request.num_epochs is None
    said = " ".join(request.not_understood).lower()
    assert all(word.lower() in said for word in words), request.not_understood


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("LoRA fine-tune gpt2 on data/sample.jsonl for 90 minutes on an l4", "90 minutes"),
        ("LoRA fine-tune gpt2 on data/sample.jsonl with batch size 8 and 2 fortnights", "2 fortnights"),
        ("LoRA fine-tune gpt2 on data/sample.jsonl with 1.5k rows", "1.5k"),
        ("LoRA fine-tune gpt2 on data/sample.jsonl with 20% warmup", "20 %"),
        ("LoRA fine-tune falcon-40b on data/sample.jsonl on an l4", "falcon-40b"),
        ("LoRA fine-tune gpt2 on data/sample.jsonl on an h100 in fp8", "fp8"),
        ("LoRA fine-tune gpt2 on data/sample.jsonl on an l4 with int8 weights", "int8"),
        ("LoRA fine-tune gpt2 on data/sample.jsonl on an l4 with adafactor2", "adafactor2"),
    ],
)
def test_numbers_with_unknown_units_and_unknown_models_are_asked_about(text, what):
    request = parse_request(text)
    said = " ".join(request.not_understood).replace("%", " %")
    assert what in said or what.replace(" %", "%") in " ".join(request.not_understood), request.not_understood


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        (
            "Could you tune TinyLlama/TinyLlama-1.1B-Chat-v1.0 on the chats in data/ with 4-bit adapters, locally?",
            {"method": "qlora", "dataset_path": "data/", "target_gpu": "cpu"},
        ),
        (
            "qlora local:tiny-llama on data/sample.jsonl, two epochs, lr 3e-4, 40 steps, context length 256 on 2x h100",
            {
                "method": "qlora",
                "num_epochs": 2,
                "learning_rate": 3e-4,
                "max_steps": 40,
                "seq_len": 256,
                "num_gpus": 2,
                "target_gpu": "h100",
            },
        ),
        (
            "full fine-tune gpt2 on hf:tatsu-lab/alpaca on an L40S",
            {"method": "full_finetune", "dataset_path": "hf:tatsu-lab/alpaca", "target_gpu": "l40s"},
        ),
        # Catalog GPUs as people write them, not as the catalog spells them.
        ("LoRA fine-tune gpt2 on data/sample.jsonl on an RTX 4090", {"target_gpu": "rtx-4090"}),
        ("lora gpt2 data/sample.jsonl on 2x RTX A6000", {"target_gpu": "rtx-a6000", "num_gpus": 2}),
        ("lora gpt2 data/sample.jsonl on an A100 80GB", {"target_gpu": "a100-80gb"}),
        ("lora gpt2 data/sample.jsonl on an A6000", {"target_gpu": "rtx-a6000"}),
        # Precision, optimizer, sharding and packing: fields a person may set, so never left unread.
        (
            "full fine-tune gpt2 on data/sample.jsonl on 4 h100 with FSDP, 8-bit AdamW, in bf16",
            {"sharding": "fsdp", "optimizer": "adamw_8bit", "precision": "bf16", "num_gpus": 4},
        ),
        (
            "pure bf16 full fine-tune of gpt2 on data/sample.jsonl on an h100 with paged adamw 8bit, no packing",
            {"precision": "bf16_pure", "optimizer": "paged_adamw_8bit", "packing": False},
        ),
        ("lora gpt2 on data/sample.jsonl in full precision on the cpu", {"precision": "fp32", "target_gpu": "cpu"}),
        ("lora gpt2 on data/sample.jsonl on 2 l4 without fsdp, fp16", {"sharding": "none", "precision": "fp16"}),
    ],
)
def test_what_is_understood_is_read_right_and_nothing_is_left_over(text, fields):
    request = parse_request(text)
    assert request.not_understood == []
    assert {k: getattr(request, k) for k in fields} == fields


def _send(*texts: str):
    session = AgentSession("offline", policy=ASK)
    try:
        result = session.send(texts[0])
        for text in texts[1:]:
            result = session.send(text, thread_id=result.thread_id)
        return result
    finally:
        session.close()


def test_the_agent_asks_instead_of_estimating_on_an_unknown_accelerator():
    result = _send("LoRA fine-tune local:tiny-llama on data/sample.jsonl on an H800, seq_len 128")
    assert result.job is None and result.pending is None  # nothing estimated, nothing put up for approval
    reply = result.replies[-1]
    assert "H800" in reply and "a10g" in reply and "l4" in reply  # named back with the catalog's list
    assert "seq_len 128" in reply  # and what was understood


def test_the_agent_asks_about_a_foreign_epoch_count_then_takes_the_answer():
    session = AgentSession("offline", policy=ASK)
    try:
        first = session.send("Bitte LoRA von local:tiny-llama auf data/sample.jsonl, 2 Epochen, seq_len 128")
        assert first.job is None and first.pending is None  # not estimated with the default 3 epochs
        assert "2 Epochen" in first.replies[-1] and "bitte" in first.replies[-1]
        second = session.send("2 epochs, max 3 steps, on an a10g", thread_id=first.thread_id)
    finally:
        session.close()
    assert second.job is not None and second.job.spec.num_epochs == 2 and second.job.spec.seq_len == 128
    assert second.pending is not None  # put up for approval only now, with what the person said


def test_seq_len_beyond_the_models_positions_is_refused_naming_both_numbers():
    result = _send("LoRA fine-tune gpt2 on data/sample.jsonl with seq len 4096 on an l4")
    assert result.job is None
    assert "4096" in result.replies[-1] and "1,024" in result.replies[-1]


def test_a_spec_shown_for_approval_marks_what_the_person_said_and_what_is_default():
    result = _send("LoRA fine-tune local:tiny-llama on data/sample.jsonl, batch size 2, seq_len 128, 3 steps on a10g")
    assert result.pending is not None  # paused at the gate
    shown = next(r for r in result.replies if "training spec" in r)
    person, defaults = shown.split("**From you:**")[1].split("**Defaults")
    assert "micro_batch_size=2" in person and "seq_len=128" in person and "target_gpu=a10g" in person
    assert "num_epochs=" in defaults and "learning_rate=" in defaults and "num_epochs" not in person
    sources = result.pending.field_sources  # the card at the gate (CLI and Chainlit) says the same
    assert sources["micro_batch_size"] == "you" and sources["target_gpu"] == "you"
    assert sources["num_epochs"] == "default" and sources["learning_rate"] == "default"


def test_field_sources_name_changes_made_after_the_person_spoke():
    draft = {"model_name": "local:tiny-llama", "dataset_path": "data/sample.jsonl", "target_gpu": "a10g"}
    spec, problem = build_spec(draft)
    assert spec is not None and problem is None
    sources = field_sources(spec.model_copy(update={"target_gpu": "l4"}), draft)
    assert sources["target_gpu"] is Source.CHANGED and sources["model_name"] is Source.PERSON
    assert sources["num_epochs"] is Source.DEFAULT
    assert "Changed by Aegis:** target_gpu=l4" in sources_text(spec.model_copy(update={"target_gpu": "l4"}), draft)


def test_go_ahead_after_a_question_takes_the_defaults_for_what_was_not_understood():
    first = read_request({"messages": []}, parse_request("LoRA local:tiny-llama on data/sample.jsonl on an H800"))
    assert "job" not in first and "H800" in first["messages"][-1].content
    second = read_request({"messages": [], "spec_draft": first["spec_draft"]}, parse_request("go ahead"))
    assert second["job"]["spec"]["target_gpu"] and "From you:** method=lora" in second["messages"][-1].content
