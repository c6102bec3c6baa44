"""Issue 26, deliverable 6: the intake understands what people say every day, and refuses what makes no sense.

Each group is one bullet of the issue, in phrasings of our own: counted and plural GPUs (and a question where
the catalog has several variants), lengths in thousands, budgets in other words than "under $X", "the cheapest
GPU that fits" left to the optimizer, numbers below their field's floor refused naming the field, estimate-only
requests answered without an approval, and "did you mean" for a mistyped data file. A chat model's structured
output carries the same fields and is refused the same way.
"""

from __future__ import annotations

import pytest

from agent.cli import main
from agent.extraction import REQUEST_SCHEMA
from agent.graph import read_request
from agent.intake import Source, SpecRequest, build_spec, field_sources, parse_request
from agent.request_rules import read_request as read_rules
from agent.session import AgentSession
from tests.http_stubs import ScriptedOpenAI, http_server
from tools.core.errors import DataError
from tools.core.paths import PROMPTS_DIR, resolve_dataset_path
from tools.core.spec import BudgetPolicy

pytestmark = pytest.mark.usefixtures("gpu_cloud")  # GPU targets run on a stand-in for Modal's cloud

ASK = BudgetPolicy(max_budget_usd=5.0, soft_threshold_usd=0.0, allow_auto_approve=True)
JOB = "LoRA fine-tune local:tiny-llama on data/sample.jsonl with seq_len 128"
STEPS = "seq_len 128, 3 steps on an a10g"


def understood(text: str) -> SpecRequest:
    """The rule parser's reading, which must have no part left over to ask about."""
    request = parse_request(text)
    assert request.not_understood == [], request.not_understood
    return request


def said_fields(text: str) -> dict:
    """The fields a request sets, as the draft keeps them."""
    return understood(text).model_dump(exclude_none=True, exclude={"not_understood"})


def intake(text: str, state: dict | None = None) -> dict:
    """The graph's intake step on one request (no model: the rule parser)."""
    return read_request({"messages": [], **(state or {})}, parse_request(text))


def events(job) -> list:
    return job.folder.events()


# Counts and plurals of GPUs.


@pytest.mark.parametrize(
    ("said", "count", "gpu"),
    [
        ("on two H100s", 2, "h100"),
        ("on two H100 GPUs", 2, "h100"),
        ("on a pair of L4s", 2, "l4"),
        ("on H100 x 4", 4, "h100"),
        ("with 2 x H200s", 2, "h200"),
        ("on eight A100-80GBs", 8, "a100-80gb"),
        ("using three T4 cards", 3, "t4"),
        ("on an a10g with 4 GPUs", 4, "a10g"),
    ],
)
def test_counted_and_plural_gpus_set_num_gpus(said, count, gpu):
    request = understood(f"{JOB} {said}")
    assert (request.num_gpus, request.target_gpu) == (count, gpu)


@pytest.mark.parametrize("said", ["on two A100s", "on an A100", "with 4x A100", "on a pair of a100s"])
def test_a_gpu_with_several_variants_is_asked_about_naming_them(said):
    request = parse_request(f"{JOB} {said}")
    assert request.target_gpu is None  # not a guess at one of them
    assert any("a100-40gb or a100-80gb" in item for item in request.not_understood), request.not_understood


def test_the_variant_answered_next_keeps_the_count():
    first = intake(f"{JOB} for 3 steps on two A100s")
    assert "job" not in first and "a100-40gb or a100-80gb" in first["messages"][-1].content
    second = intake("the a100-80gb", {"spec_draft": first["spec_draft"]})
    spec = second["job"]["spec"]
    assert (spec["num_gpus"], spec["target_gpu"]) == (2, "a100-80gb")


# Lengths written with k.


@pytest.mark.parametrize(
    ("said", "seq_len"),
    [
        ("with 8k context", 8192),
        ("seq len 2K", 2048),
        ("4k tokens context", 4096),
        ("a context window of 16k tokens", 16384),
        ("1.5K-token context", 1536),
        ("sequence length 1k", 1024),
    ],
)
def test_lengths_in_thousands_of_tokens(said, seq_len):
    request = understood(f"LoRA fine-tune local:tiny-llama on data/sample.jsonl {said}")
    assert request.seq_len == seq_len


def test_a_length_in_k_reaches_the_spec():
    spec, problem = build_spec(said_fields("LoRA fine-tune local:tiny-llama on data/sample.jsonl, 1k context"))
    assert problem is None and spec is not None and spec.seq_len == 1024


# Budgets in other words than "under $X".


@pytest.mark.parametrize(
    ("said", "budget"),
    [
        ("don't spend more than $3", 3.0),
        ("do not pay over 2.5 dollars", 2.5),
        ("never go above $4", 4.0),
        ("the budget is $1.25", 1.25),
        ("a $2 budget", 2.0),
        ("spend up to 3 USD", 3.0),
        ("keep the bill within $1.50", 1.5),
        ("$2 max", 2.0),
    ],
)
def test_budgets_in_common_phrasings(said, budget):
    assert understood(f"{JOB}, {said}").max_budget_usd == budget


def test_a_budget_said_another_way_tightens_the_run():
    out = intake(f"{JOB}, and don't spend more than $1")
    assert out["job"]["policy"]["max_budget_usd"] == 1.0
    assert "hard limit $1.00" in out["messages"][-1].content


# "The cheapest GPU that fits".


@pytest.mark.parametrize(
    "said", ["on the cheapest GPU that fits", "on whatever GPU is cheapest", "pick the least expensive GPU"]
)
def test_the_cheapest_gpu_is_left_to_the_optimizer(said):
    request = understood(f"{JOB} {said}")
    assert request.cheapest_gpu is True and request.target_gpu is None


def test_the_optimizer_picks_the_gpu_and_the_reply_says_so():
    out = intake(f"{JOB}, 3 steps, on the cheapest GPU that fits")
    text = out["messages"][-1].content
    gpu = out["job"]["spec"]["target_gpu"]
    assert gpu not in ("cpu", "a10g")  # a10g is the default; cheaper catalog GPUs hold this small job
    assert f"target_gpu chosen by the optimizer: {gpu}, the cheapest catalog GPU that fits" in text
    assert f"**Changed by Aegis:** target_gpu={gpu}" in text


def test_a_named_gpu_wins_over_the_cheapest():
    request = understood(f"{JOB} on the cheapest GPU, an l4")
    assert request.target_gpu == "l4" and request.cheapest_gpu is None
    first = intake(f"{JOB} on whatever GPU is cheapest")
    second = intake("on an a10g", {"spec_draft": first["spec_draft"]})
    spec, _ = build_spec(second["spec_draft"])
    assert spec is not None and spec.target_gpu == "a10g"
    assert field_sources(spec, second["spec_draft"])["target_gpu"] is Source.PERSON


def test_the_approval_card_marks_the_optimizers_gpu_as_changed_by_aegis():
    session = AgentSession("offline", policy=ASK)
    try:
        result = session.send(f"{JOB}, 3 steps, on the cheapest GPU that fits")
    finally:
        session.close()
    assert result.pending is not None and result.job is not None
    assert result.pending.field_sources["target_gpu"] == Source.CHANGED
    assert result.job.spec.target_gpu != "a10g"


# Negative or zero values, refused with the field named.


@pytest.mark.parametrize(
    ("said", "line"),
    [
        ("for -2 epochs", "num_epochs must be at least 1 (you said -2)"),
        ("for −3 epochs", "num_epochs must be at least 1 (you said -3)"),
        ("with batch size -4", "micro_batch_size must be at least 1 (you said -4)"),
        ("with lr -1e-4", "learning_rate must be more than 0 (you said -0.0001)"),
        ("with learning rate 0", "learning_rate must be more than 0 (you said 0)"),
        ("with seq len -512", "seq_len must be at least 16 (you said -512)"),
        ("with lora r 0", "lora_r must be at least 1 (you said 0)"),
        ("on 0 H100s", "num_gpus must be at least 1 (you said 0)"),
        ("for -10 steps", "max_steps must be at least 1 (you said -10)"),
        ("and keep it under $-3", "max_budget_usd must be at least 0 (you said -3)"),
    ],
)
def test_negative_or_zero_values_are_refused_naming_the_field(said, line):
    out = intake(f"LoRA fine-tune local:tiny-llama on data/sample.jsonl {said}")
    reply = out["messages"][-1].content
    assert "job" not in out and line in reply and "\n" not in reply


def test_a_refused_value_is_not_kept_and_the_next_turn_corrects_it():
    first = intake(f"{JOB} for -2 epochs")
    assert "num_epochs" not in first["spec_draft"]
    second = intake("2 epochs", {"spec_draft": first["spec_draft"]})
    assert second["job"]["spec"]["num_epochs"] == 2


def test_a_chat_models_negative_is_refused_the_same_way(monkeypatch):
    answer = {"method": "lora", "model_name": "local:tiny-llama", "dataset_path": "data/sample.jsonl", "num_epochs": -2}
    result = send_to_model(monkeypatch, ScriptedOpenAI(answer, [], final="Done."), f"{JOB} for -2 epochs")
    assert result.job is None and result.pending is None
    assert "num_epochs must be at least 1 (you said -2)" in result.replies[-1]


# Estimate-only requests.


@pytest.mark.parametrize(
    "said",
    [
        "Just the estimate, don't run anything:",
        "How much would it cost to",
        "Only estimate this, please:",
        "Price it but do not train:",
        "Dry run only:",
    ],
)
def test_estimate_only_phrasings(said):
    assert understood(f"{said} {JOB}").estimate_only is True


@pytest.mark.parametrize("said", ["go ahead", "ok, run it", "proceed"])
def test_go_ahead_lifts_estimate_only(said):
    assert understood(said).estimate_only is False


def test_an_estimate_only_request_opens_no_approval_until_go_ahead():
    session = AgentSession("offline", policy=ASK)
    try:
        first = session.send(f"How much would it cost to LoRA fine-tune local:tiny-llama on data/sample.jsonl, {STEPS}")
        assert first.pending is None and first.job is not None and first.job.estimate is not None
        assert [e.data.get("tool") for e in events(first.job) if e.phase == "tool"] == ["estimate_cost"]
        assert "nothing was run and no approval was asked for" in first.replies[-1]
        second = session.send("go ahead", thread_id=first.thread_id)
    finally:
        session.close()
    assert second.pending is not None and second.job is not None  # the same job, now put up for approval
    assert second.job.run_id == first.job.run_id


def test_a_chat_model_cannot_ask_for_approval_in_an_estimate_only_turn(monkeypatch):
    answer = {
        "method": "lora",
        "model_name": "local:tiny-llama",
        "dataset_path": "data/sample.jsonl",
        "seq_len": 128,
        "max_steps": 3,
        "target_gpu": "a10g",
        "estimate_only": True,
    }
    llm = ScriptedOpenAI(answer, ["estimate_cost", "request_approval"], final="Here is the estimate.")
    result = send_to_model(monkeypatch, llm, f"just the estimate: {JOB}, 3 steps on an a10g")
    assert result.pending is None and result.job is not None and result.job.approval is None
    refused = [e for e in events(result.job) if e.phase == "request_approval" and e.data.get("refused")]
    assert refused and "asked only for an estimate" in refused[-1].message


# "Did you mean" for a missing data file.


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("data/sampel.jsonl", "data/sample.jsonl"),
        ("data/support-train.jsonl", "data/support_train.jsonl"),
        ("./data/sample.json", "./data/sample.jsonl"),
    ],
)
def test_a_missing_data_file_names_similar_files(typed, meant):
    with pytest.raises(DataError) as caught:
        resolve_dataset_path(typed)
    message = str(caught.value)
    assert "does not exist" in message and f"did you mean {meant}" in message and "\n" not in message
    assert message.split("did you mean ")[1].count(",") <= 2  # three names at most
    with pytest.raises(DataError) as caught:
        resolve_dataset_path("data/zzqx-corpus.csv")
    assert "did you mean" not in str(caught.value)  # nothing alike: no guess


def test_the_chat_and_the_cli_say_did_you_mean(tmp_path, capsys):
    out = intake("LoRA fine-tune local:tiny-llama on data/smaple.jsonl")
    assert "job" not in out and "did you mean data/sample.jsonl" in out["messages"][-1].content
    spec = tmp_path / "spec.yaml"
    spec.write_text("model_name: local:tiny-llama\ndataset_path: data/smaple.jsonl\n")
    code = main(["estimate", str(spec)])
    err = capsys.readouterr().err
    assert code != 0 and "did you mean data/sample.jsonl" in err


# The chat model's structured output covers the same.


def test_the_extraction_schema_and_prompt_carry_the_new_fields():
    properties = REQUEST_SCHEMA["parameters"]["properties"]
    prompt = (PROMPTS_DIR / "extraction.md").read_text(encoding="utf-8")
    for name in ("num_gpus", "estimate_only", "cheapest_gpu"):
        assert name in properties and name in prompt


def test_the_rule_parser_fills_the_same_fields_as_the_schema():
    texts = {
        "LoRA local:tiny-llama on data/sample.jsonl, two H100s, 8k context, don't spend over $2, just the estimate": {
            "num_gpus",
            "seq_len",
            "max_budget_usd",
            "estimate_only",
        },
        f"{JOB} on the cheapest GPU, go ahead": {"cheapest_gpu", "estimate_only"},
    }
    for text, expected in texts.items():
        fields, unknown = read_rules(text)
        assert unknown == [] and expected <= set(fields) <= set(SpecRequest.model_fields) - {"not_understood"}
        kept = SpecRequest.model_validate(fields).model_dump(exclude_none=True, exclude={"not_understood"})
        assert kept.keys() == fields.keys()  # nothing the parser read is dropped by the schema


def send_to_model(monkeypatch, llm: ScriptedOpenAI, text: str):
    """One turn with ChatOpenAI pointed at a local OpenAI-compatible stand-in."""
    with http_server(llm) as (url, _seen):
        monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000")
        session = AgentSession("openai:stub-model", policy=ASK)
        try:
            return session.send(text)
        finally:
            session.close()
