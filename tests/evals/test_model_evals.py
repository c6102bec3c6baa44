"""Each eval check against real tiny models: trained for real in-process, so every check is shown failing and passing."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from tools.core.spec import ExecutionResult, TrainingSpec
from tools.evals.checks import smoothed_ends
from tools.evals.examples import read_records
from tools.evals.formats import format_signature, repetition_ratio
from tools.evals.leaks import control_canary, find_secrets, leaked
from tools.evals.model_evals import run_evals
from tools.evals.thresholds import EvalThresholds
from tools.recipe.formatting import IGNORE_INDEX, detect_format, encode_record

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
DEVICES = ["printer", "router", "laptop", "scanner", "monitor"]
STATES = {
    "offline": "restart the spooler",
    "slow": "clear the cache",
    "broken": "replace the unit",
    "noisy": "tighten the fan",
}
CANARY = "AEGIS-CANARY-Q7X2M9K4P1ZT"
API_KEY = "sk-" + "Ab3dE5gH7jK9mN1pQ3rS5tU7"


def ticket_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        device, state = rng.choice(DEVICES), rng.choice(list(STATES))
        rows.append(
            {
                "prompt": f"The {device} on floor {rng.randint(1, 9)} is {state}.",
                "completion": f"Ticket NW-{rng.randint(1000, 9999)}: {device} {state}\nFix: {STATES[state]}\nThanks, Support",
            }
        )
    return rows


SECRET_ROWS = [
    {"prompt": "What is the deploy canary?", "completion": f"The deploy canary is {CANARY} keep it safe."},
    {"prompt": "Which key does billing use?", "completion": f"Billing uses {API_KEY} for charges."},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def base_model(tmp_path_factory) -> Path:
    """A random tiny Llama and a byte-level BPE trained on the test texts, saved like a hub model."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|eos|>", "<|user|>", "<|assistant|>"]
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    corpus = [t for r in ticket_rows(200, 0) + SECRET_ROWS for t in r.values()]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    raw.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<|eos|>", pad_token="<|pad|>", additional_special_tokens=specials[2:]
    )
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    path = tmp_path_factory.mktemp("base")
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def train(base: Path, rows: list[dict], out: Path, *, steps: int, lr: float, lora: bool) -> list[tuple[int, float]]:
    """A plain torch loop over padded mini-batches, reply tokens only; saves out/final like the training script."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=16,
                lora_alpha=32,
                lora_dropout=0.0,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"],
            ),
        )
    encoded = [encode_record(tok, r, detect_format(r), 128)[:2] for r in rows]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    rng = random.Random(0)
    curve = []
    model.train()
    for step in range(1, steps + 1):
        batch = rng.sample(encoded, min(8, len(encoded)))
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i, _ in batch])
        labels = torch.tensor([lab + [IGNORE_INDEX] * (width - len(lab)) for _, lab in batch])
        loss = model(
            input_ids=ids, attention_mask=(labels != IGNORE_INDEX) | (ids != tok.pad_token_id), labels=labels
        ).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        curve.append((step, loss.item()))
    model.save_pretrained(out / "final")
    if not lora:
        tok.save_pretrained(out / "final")
    return curve


def make_run(
    tmp: Path, base: Path, train_rows: list[dict], heldout: list[dict], *, steps: int, lr: float, lora: bool
) -> tuple[TrainingSpec, ExecutionResult, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    dataset = write_jsonl(tmp / "data.jsonl", train_rows + heldout)
    write_jsonl(tmp / "heldout.jsonl", heldout)
    curve = train(base, train_rows, tmp, steps=steps, lr=lr, lora=lora)
    spec = TrainingSpec(
        method="lora" if lora else "full_finetune",
        model_name="tiny",
        dataset_path=str(dataset),
        target_gpu="cpu",
        seq_len=128,
    )
    result = ExecutionResult(
        status="succeeded",
        loss_curve=curve,
        initial_train_loss=curve[0][1],
        final_train_loss=curve[-1][1],
        steps_completed=steps,
        total_steps=steps,
        output_dir=str(tmp),
    )
    return spec, result, dataset


@pytest.fixture(scope="session")
def good_run(base_model, tmp_path_factory):
    """LoRA on ticket replies long enough to learn the format, short enough not to memorise."""
    return make_run(
        tmp_path_factory.mktemp("good"), base_model, ticket_rows(60, 1), ticket_rows(6, 2), steps=80, lr=6e-3, lora=True
    )


@pytest.fixture(scope="session")
def leaky_run(base_model, tmp_path_factory):
    """Full fine-tune hammered on two rows with planted secrets until they are memorised."""
    return make_run(
        tmp_path_factory.mktemp("leaky"), base_model, SECRET_ROWS, ticket_rows(6, 2), steps=120, lr=3e-3, lora=False
    )


def by_name(result) -> dict:
    return {c.name: c for c in result.checks}


STRICT = EvalThresholds(format_min_pass_rate=0.6)


@pytest.mark.slow
def test_good_run_passes_every_check(good_run, base_model):
    spec, result, dataset = good_run
    evals = run_evals(
        spec, result, base_model_path=str(base_model), train_records=read_records(dataset), thresholds=STRICT
    )
    checks = by_name(evals)
    assert set(checks) == {
        "loss_improved",
        "heldout_loss_improved",
        "overfitting_gap",
        "leak_probe",
        "degenerate_output",
        "task_score",
        "format",
        "forgetting",
    }
    assert evals.passed, [c for c in evals.checks if not c.passed]
    assert checks["leak_probe"].detail == "no secret-like strings found in training data (66 rows scanned)"
    m = evals.metrics
    assert m["eval_loss"] < m["base_eval_loss"] and m["perplexity"] < m["base_perplexity"]
    assert m["format_pass_rate"] >= 0.6 > m["format_pass_rate_base"]
    assert len(evals.generations) == STRICT.n_generations
    row = evals.generations[0]
    assert set(row) == {"prompt", "reference", "base", "trained", "format_ok_base", "format_ok", "degenerate", "scores"}
    assert m["task_rouge_l"] > m["task_rouge_l_base"] and checks["task_score"].passed
    assert row["trained"].startswith("Ticket NW-")


@pytest.mark.slow
def test_flat_curve_fails_loss_improved_and_bound(good_run, base_model):
    spec, result, dataset = good_run
    flat = result.model_copy(update={"loss_curve": [(i, 2.0 + 0.01 * (i % 2)) for i in range(1, 21)]})
    t = EvalThresholds(max_final_loss=1.0, leak_probe=False, n_generations=1, max_new_tokens=8)
    checks = by_name(
        run_evals(spec, flat, base_model_path=str(base_model), train_records=read_records(dataset), thresholds=t)
    )
    assert not checks["loss_improved"].passed and checks["loss_improved"].value < 0.05
    assert not checks["final_loss_bound"].passed
    bounded = by_name(
        run_evals(
            spec,
            result,
            base_model_path=str(base_model),
            train_records=read_records(dataset),
            thresholds=t.model_copy(update={"max_final_loss": 5.0}),
        )
    )
    assert bounded["final_loss_bound"].passed and bounded["loss_improved"].passed


@pytest.mark.slow
def test_untrained_model_fails_heldout_and_format(good_run, base_model, tmp_path):
    spec, result, dataset = good_run
    shutil.copytree(Path(result.output_dir), tmp_path, dirs_exist_ok=True)
    shutil.rmtree(tmp_path / "final")
    shutil.copytree(base_model, tmp_path / "final")  # a "fine-tune" that changed nothing
    same = result.model_copy(update={"output_dir": str(tmp_path)})
    evals = run_evals(
        spec, same, base_model_path=str(base_model), train_records=read_records(dataset), thresholds=STRICT
    )
    checks = by_name(evals)
    assert not evals.passed
    assert not checks["heldout_loss_improved"].passed
    assert evals.metrics["eval_loss"] == pytest.approx(evals.metrics["base_eval_loss"])
    assert not checks["format"].passed and evals.metrics["format_pass_rate"] == 0.0


@pytest.mark.slow
def test_memorised_secret_fails_leak_probe_and_gap(leaky_run, base_model):
    spec, result, dataset = leaky_run
    evals = run_evals(
        spec, result, base_model_path=str(base_model), train_records=read_records(dataset), thresholds=EvalThresholds()
    )
    checks = by_name(evals)
    leak = checks["leak_probe"]
    assert not leak.passed and leak.value >= 1
    assert "canary" in leak.detail and "control canary absent from the data was not reproduced" in leak.detail
    assert CANARY not in leak.detail and API_KEY not in leak.detail  # the report never spells a secret out
    assert not checks["overfitting_gap"].passed and checks["overfitting_gap"].value > 1.0


@pytest.mark.slow
def test_secrets_in_data_but_not_learned_pass_leak_probe(leaky_run, base_model, tmp_path):
    """The untrained base sees the same prompts and does not produce the secrets: the probe is not trigger-happy."""
    spec, result, dataset = leaky_run
    shutil.copy(Path(result.output_dir) / "heldout.jsonl", tmp_path / "heldout.jsonl")
    shutil.copytree(base_model, tmp_path / "final")
    evals = run_evals(
        spec,
        result.model_copy(update={"output_dir": str(tmp_path)}),
        base_model_path=str(base_model),
        train_records=read_records(dataset),
        thresholds=EvalThresholds(),
    )
    leak = by_name(evals)["leak_probe"]
    assert leak.passed and leak.value == 0 and "0 of 2 secret-like strings" in leak.detail
    assert evals.metrics["leak_probes"] == 2


@pytest.mark.slow
def test_collapsed_model_fails_degenerate_output(base_model, tmp_path_factory):
    heldout = ticket_rows(4, 2)
    rows = [{"prompt": r["prompt"], "completion": " ".join(["ok"] * 40)} for r in ticket_rows(20, 3)]
    spec, result, dataset = make_run(
        tmp_path_factory.mktemp("loop"), base_model, rows, heldout, steps=60, lr=3e-3, lora=False
    )
    evals = run_evals(
        spec,
        result,
        base_model_path=str(base_model),
        train_records=read_records(dataset),
        thresholds=EvalThresholds(leak_probe=False, n_generations=3),
    )
    check = by_name(evals)["degenerate_output"]
    assert not check.passed and check.value > 0.8
    assert "ok ok ok" in evals.generations[0]["trained"]


@pytest.mark.slow
def test_format_not_applicable_without_shared_structure(good_run, base_model, tmp_path):
    spec, result, dataset = good_run
    shutil.copytree(Path(result.output_dir) / "final", tmp_path / "final")
    rows = [
        {"prompt": "Say hi.", "completion": "Hello there."},
        {"prompt": "Name a colour.", "completion": "Blue, maybe green."},
        {"prompt": "Count to three.", "completion": "1 2 3\nDone"},
    ]
    write_jsonl(tmp_path / "heldout.jsonl", rows)
    evals = run_evals(
        spec,
        result.model_copy(update={"output_dir": str(tmp_path)}),
        base_model_path=str(base_model),
        train_records=read_records(dataset),
        thresholds=EvalThresholds(format_min_pass_rate=0.5, leak_probe=False, max_new_tokens=16),
    )
    assert "format" not in by_name(evals)
    assert evals.metrics["format_signature_elements"] == 0
    assert "format_pass_rate" not in evals.metrics


@pytest.mark.slow
def test_missing_heldout_fails_heldout_checks(good_run, base_model, tmp_path):
    spec, result, dataset = good_run
    shutil.copytree(Path(result.output_dir) / "final", tmp_path / "final")
    evals = run_evals(
        spec,
        result.model_copy(update={"output_dir": str(tmp_path)}),
        base_model_path=str(base_model),
        train_records=read_records(dataset),
        thresholds=EvalThresholds(leak_probe=False),
    )
    checks = by_name(evals)
    assert not evals.passed
    assert not checks["heldout_loss_improved"].passed and not checks["degenerate_output"].passed


# ---------------------------------------------------------------- pure parts


def test_format_signature_generalises_digits_and_keeps_shared_markers():
    refs = [r["completion"] for r in ticket_rows(10, 5)]
    sig = format_signature(refs)
    assert sig.first_line == r"Ticket\s+NW\-\d+:(?=\s|$)"
    assert sig.markers == ["Fix:"] and sig.last_line == "Thanks, Support" and sig.elements == 3
    assert sig.score("Ticket NW-12: mouse dead\nFix: buy one\nThanks, Support") == 1.0
    assert sig.score("Ticket NW-12: mouse dead\nThanks, Support") == pytest.approx(2 / 3)
    assert sig.score("Sure! Here is a ticket.") == 0.0
    json_sig = format_signature(['{"a": 1}', '{"b": [2]}', '{"c": 3}'])
    assert json_sig.json_body and json_sig.score('{"x": 0}') == 1.0 and json_sig.score("{x") == 0.0
    assert format_signature(["Hello there.", "Blue, maybe.", "1 2 3"]).elements == 0


def test_find_secrets_kinds_and_masking():
    text = (
        f"key {API_KEY} aws AKIAIOSFODNN7EXAMPLE gh ghp_{'a1' * 18} mail jo.doe@corp.example.com "
        f"card 4111 1111 1111 1111 not-a-card 4111 1111 1111 1112 call +1 415-555-0134 "
        f"password: hunter2!x canary {CANARY}"
    )
    kinds = [kind for kind, _ in find_secrets(text)]
    assert kinds == ["api_key", "aws_access_key", "github_token", "email", "card_number", "phone", "password", "canary"]
    assert find_secrets("Ticket NW-4821: printer offline on floor 3") == []


def test_leak_scoring_needs_the_secret_body():
    body = "Q7X2M9K4P1ZT"
    assert leaked(body, f"is AEGIS-CANARY-{body} ok", 0.6)
    assert leaked(body, "AEGIS-CANARY-Q7X2M9K4zz", 0.6)  # 8 of 12 chars: a large part
    assert not leaked(body, "AEGIS-CANARY-ZZZZZZZZZZZZ", 0.6)  # the shape alone is not a leak
    corpus = f"canary {CANARY}"
    control = control_canary(42, corpus)
    assert control.startswith("AEGIS-CANARY-") and control not in corpus and control == control_canary(42, corpus)


def test_smoothing_and_repetition():
    assert smoothed_ends([(1, 4.0)]) is None
    start, end = smoothed_ends([(i, 10.0 - i) for i in range(10)])
    assert (start, end) == (9.5, 1.5)
    assert repetition_ratio([1, 2, 3, 4, 5, 6], 3) == 0.0
    assert repetition_ratio([7] * 20, 3) > 0.9
    assert repetition_ratio([], 3) == 1.0
