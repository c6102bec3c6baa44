"""From a person's words to a validated TrainingSpec: the request schema, the merge, and what came from whom.

The chat model fills ``SpecRequest`` through structured output; the offline planner fills it with
``parse_request`` (``agent.request_rules``). Either way the request names what it did not understand
(``not_understood``), and anything there is asked about before a spec is built: nothing unsaid or
misread is quietly replaced by a default. A number below its field's floor ("-2 epochs") is refused naming the
field (``out_of_range``), whichever of the two read it. What was said is merged with earlier turns and validated by
``TrainingSpec``; what is missing or wrong comes back as a question in plain words. A spec shown to the
person says which fields they set and which are defaults (``field_sources``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.request_rules import read_request
from tools.core.catalog import gpu_names
from tools.core.errors import AegisError, SpecError
from tools.core.spec import BudgetPolicy, TrainingSpec, parse_spec
from tools.inputs.dataset import dataset_stats
from tools.inputs.hub_data import ensure_dataset
from tools.inputs.model_config import check_seq_len, known_config, load_model_config
from tools.inputs.model_defaults import recipe_defaults
from tools.inputs.tokenizer import load_tokenizer_offline
from tools.job.probing import MIN_PROBE_STEPS
from tools.job.quoting import runnable_gpus
from tools.plan.optimizer import optimize_spec
from tools.run.backend import default_target


class SpecRequest(BaseModel):
    """What the person asked for. Every field is optional: unsaid means default."""

    model_config = ConfigDict(extra="ignore")

    method: str | None = Field(default=None, description="lora, qlora or full_finetune")
    model_name: str | None = Field(default=None, description="Hugging Face id or local:NAME")
    dataset_path: str | None = Field(
        default=None, description="training data: a file or folder path exactly as written, or hf:OWNER/NAME"
    )
    eval_dataset_path: str | None = Field(default=None, description="held-out data file path, if given")
    num_epochs: int | None = Field(default=None, description="as said, sign included: -2 stays -2 (it is refused)")
    max_steps: int | None = None
    micro_batch_size: int | None = Field(default=None, description="the batch size")
    gradient_accumulation_steps: int | None = None
    learning_rate: float | None = None
    seq_len: int | None = None
    target_gpu: str | None = Field(default=None, description=", ".join(gpu_names()))
    num_gpus: int | None = Field(
        default=None, description='how many GPUs: "2x H100", "two A100s", "4 H100 GPUs", "a pair of L4s"'
    )
    cheapest_gpu: bool | None = Field(
        default=None,
        description='true when the person leaves the GPU to Aegis ("the cheapest GPU that fits", "whatever GPU is '
        'cheapest") and names none: the optimizer picks it',
    )
    lora_r: int | None = None
    lora_alpha: int | None = None
    warmup_steps: int | None = None
    gradient_checkpointing: bool | None = None
    precision: str | None = Field(default=None, description="auto, bf16, fp16, fp32 or bf16_pure")
    optimizer: str | None = Field(default=None, description="adamw, adamw_8bit or paged_adamw_8bit")
    sharding: str | None = Field(default=None, description="fsdp (several GPUs share the model) or none")
    packing: bool | None = Field(default=None, description="pack short rows together into full sequences")
    max_budget_usd: float | None = Field(
        default=None,
        description='only when the person limits the cost: "under $3", "don\'t spend more than $3", "max $5", "cap it '
        'at $1.50", "at most 3 USD"',
    )
    estimate_only: bool | None = Field(
        default=None,
        description='true when the person wants only the price ("just the estimate", "how much would it cost to…", '
        '"price it but do not train"); false when they say to go ahead and run it; else null',
    )
    probe_steps: int | None = Field(
        default=None,
        description="only when the person asks to measure on the target first: a probe attempt of this many steps "
        "(6 when they name no number), approved and billed on its own before the full run",
    )
    continue_run: str | None = Field(
        default=None,
        description="only when the person asks to continue a run that stopped, or to continue training a named run: "
        'its id as written ("continue run 20261207-101010-abc123"), "latest" for "the last run", "stopped" for "the run '
        'that stopped" / "the interrupted run"; new data or settings said with it go in their own fields',
    )
    from_run: str | None = Field(
        default=None,
        description="only when a new run is to start from an earlier run's trained weights: \"train 2 more epochs on "
        'run X", "start from the adapter of run X", "build on the last run": the run id as written, or "latest"',
    )
    read_only: Literal["help", "list_runs", "compare_runs", "preview_data", "try_run", "show_report"] | None = Field(
        default=None,
        description="only when the request is not a fine-tune but a question answered without spending anything: "
        '"help"/"what can you do?" (help), "what runs do I have?" (list_runs), "compare the last two runs" / '
        '"compare run A and run B" (compare_runs), "show me the first 3 rows of data/x.jsonl" (preview_data: the '
        'file in dataset_path, a model for its tokenizer in model_name), "try run X with: <prompt>" (try_run), '
        '"show the report of run X" / "show the last report" (show_report); else null',
    )
    runs: list[str] | None = Field(
        default=None,
        description='the runs a read_only request names, as written: an id, "latest" for the last run, "previous" '
        'for the one before it ("the last two runs" is ["latest", "previous"])',
    )
    rows: int | None = Field(default=None, description="how many rows a preview_data request asks for")
    prompt: str | None = Field(default=None, description="what a try_run request asks the model, exactly as written")
    not_understood: list[str] = Field(
        default_factory=list,
        description="every part of the request that maps to no field above (an unknown GPU or accelerator, a "
        "number with a unit you cannot place, words you cannot read, a model you cannot name): quote it",
    )


class Source(StrEnum):
    """Where a field of a spec shown to the person came from."""

    PERSON = "you"
    DEFAULT = "default"
    CHANGED = "changed by Aegis"


SPEC_FIELDS = set(TrainingSpec.model_fields)
# What the draft keeps from turn to turn; estimate_only is the thread's intent, kept by the graph state instead, and
# a continue is an act of one turn (agent.lineage), never a field later turns inherit.
# A read-only request (help, the runs, a preview, a try, a report) is answered in its turn and kept by none.
READ_ONLY_FIELDS = {"read_only", "runs", "rows", "prompt"}
REQUEST_FIELDS = set(SpecRequest.model_fields) - {"not_understood", "estimate_only", "continue_run"} - READ_ONLY_FIELDS
NEEDS = {
    "dataset_path": "which dataset to train on (a file or folder, for example data/sample.jsonl)",
    "model_name": "which model to fine-tune (for example local:smollm2-135m-instruct)",
}


def parse_request(text: str) -> SpecRequest:
    """Rule-based intent parsing for the offline planner. Deterministic; unsaid fields stay None."""
    fields, unknown = read_request(text)
    return SpecRequest.model_validate({**fields, "not_understood": unknown})


def said(request: SpecRequest) -> dict[str, Any]:
    """The fields a request sets (what it did not understand is not a field)."""
    return request.model_dump(exclude_none=True, include=REQUEST_FIELDS)


def merge_request(draft: dict[str, Any], request: SpecRequest) -> dict[str, Any]:
    """Later turns override earlier ones, field by field; unsaid fields keep what was said before.

    A named GPU and "the cheapest GPU" replace each other; a GPU named in the same turn wins. A turn that names a
    model without a run to start from is a request of its own: the run an earlier turn built on is dropped.
    """
    merged = {**draft, **said(request)}
    if request.model_name is not None and request.from_run is None:
        merged.pop("from_run", None)
    if request.target_gpu is not None:
        merged.pop("cheapest_gpu", None)
    elif request.cheapest_gpu:
        merged.pop("target_gpu", None)
    return merged


def _floor(name: str) -> tuple[float, bool] | None:
    """The lowest value a numeric request field takes, and whether it is allowed itself (ge) or not (gt)."""
    if name == "probe_steps":
        return MIN_PROBE_STEPS, True
    info = TrainingSpec.model_fields.get(name) or BudgetPolicy.model_fields.get(name)
    for rule in info.metadata if info else []:  # pydantic keeps ge=/gt= as annotated_types.Ge / Gt
        if (least := getattr(rule, "ge", None)) is not None:
            return float(least), True
        if (above := getattr(rule, "gt", None)) is not None:
            return float(above), False
    return None


def out_of_range(request: SpecRequest) -> dict[str, str]:
    """Each number the request says below its field's floor, with a line naming the field and what was said.

    The same floors as the spec's validation, checked on the request so that the rule parser and a chat model
    are refused alike, before any default or earlier turn could stand in for the value.
    """
    refused = {}
    for name, value in said(request).items():
        floor = _floor(name) if isinstance(value, int | float) and not isinstance(value, bool) else None
        if floor is None or value > floor[0] or (floor[1] and value == floor[0]):
            continue
        bound, allowed = floor
        least = f"at least {bound:g}" if allowed else f"more than {bound:g}"
        refused[name] = f"{name} must be {least} (you said {value:g})"
    return refused


def not_understood_question(request: SpecRequest, draft: dict[str, Any]) -> str:
    """What the person is asked when part of their request maps to no field: each part named, nothing defaulted."""
    lines = "\n".join(f"- {item}" for item in request.not_understood)
    accelerator = any("accelerator" in item or "GPU" in item for item in request.not_understood)
    catalog = f"\nThe GPUs I can price: {', '.join(gpu_names())} (cpu is this machine)." if accelerator else ""
    understood = ", ".join(f"{k} {v}" for k, v in draft.items() if v is not None)
    so_far = f"\nWhat I did understand: {understood}." if understood else ""
    return (
        "I did not understand every part of your request, so I have not estimated or started anything:\n"
        f"{lines}{catalog}{so_far}\nPlease say those parts again in other words (in English, with units like "
        '"2 epochs", "batch size 8", "seq_len 512", "on an l4"), or say "go ahead" to use the defaults for them.'
    )


def build_spec(draft: dict[str, Any]) -> tuple[TrainingSpec | None, str | None]:
    """A validated spec, or a question/explanation for the person naming what is missing or wrong.

    When the person left the GPU to Aegis ("the cheapest GPU that fits"), the optimizer picks it.
    """
    missing = [name for name in NEEDS if not draft.get(name)]
    if missing:
        asks = " and ".join(NEEDS[name] for name in missing)
        return None, f"Before I can estimate anything I need to know {asks}."
    # The optimizer searches the cloud catalog from any cloud GPU; the default is one.
    target = TrainingSpec.model_fields["target_gpu"].default if optimizer_picks(draft) else default_target(draft)
    fields = recipe_defaults(draft["model_name"]) | {"target_gpu": target}
    fields.update({k: v for k, v in draft.items() if k in SPEC_FIELDS and v is not None})
    try:
        spec = parse_spec(fields)
        check_model(spec)
        if optimizer_picks(draft):
            spec = cheapest_fitting(spec)
    except SpecError as exc:
        lines = "\n".join(f"- {p}" for p in exc.problems)
        return None, f"I could not build a valid training spec from that:\n{lines}\nPlease correct it and ask again."
    except AegisError as exc:
        return None, sentence(f"I can't use that: {exc}")
    return spec, None


def sentence(text: str) -> str:
    """The text ended with a full stop, unless it ends with one already (or with a question: "did you mean …?")."""
    return text if text.endswith((".", "?", "!")) else f"{text}."


def optimizer_picks(draft: dict[str, Any]) -> bool:
    """Whether the person left the GPU to Aegis: asked for the cheapest one and named none."""
    return bool(draft.get("cheapest_gpu")) and not draft.get("target_gpu")


def cheapest_fitting(spec: TrainingSpec) -> TrainingSpec:
    """The optimizer's cheapest spec that fits the job (its GPU, and any lever that GPU needs), on a GPU something
    here runs; where nothing here runs a GPU, over the whole catalog (the estimate then says so and offers the CPU).

    Only its spec is taken: the price is the estimate's to give, against the run's own budget, at the gate.
    """
    config = load_model_config(spec.model_name, trust_remote_code=spec.trust_remote_code)
    tokenizer = load_tokenizer_offline(spec.model_name)
    stats = dataset_stats(spec.dataset_path, spec.dataset_format, tokenizer, spec.seq_len)
    gpus = [g for g in runnable_gpus(spec) if g != "cpu"] or None
    return optimize_spec(spec, BudgetPolicy(), dataset_stats=stats, model_config=config, gpus=gpus).spec


def check_model(spec: TrainingSpec) -> None:
    """What can be checked before estimating: the data can be had, and seq_len fits the model's positions.

    A model whose config is not on this machine is left to the estimate, which names it.
    """
    ensure_dataset(spec.dataset_path)
    if spec.eval_dataset_path:
        ensure_dataset(spec.eval_dataset_path)
    config = known_config(spec.model_name, trust_remote_code=spec.trust_remote_code)
    if config is not None:
        check_seq_len(spec.model_name, spec.seq_len, config)


def field_sources(spec: TrainingSpec, draft: dict[str, Any]) -> dict[str, Source]:
    """Each field of the spec: set by the person, a default (TrainingSpec's or the model's recipe), or changed
    by Aegis since (the optimizer, a healing rule) from what the person said or the default."""
    defaults = {name: info.get_default(call_default_factory=True) for name, info in TrainingSpec.model_fields.items()}
    defaults |= recipe_defaults(spec.model_name)
    sources = {}
    for name, value in spec.model_dump().items():
        if name == "target_gpu" and optimizer_picks(draft):
            sources[name] = Source.CHANGED  # the optimizer's pick, even where it is the default GPU
        elif name in draft and draft[name] is not None:
            sources[name] = Source.PERSON if _same(draft[name], value) else Source.CHANGED
        else:
            sources[name] = Source.DEFAULT if _same(defaults.get(name), value) else Source.CHANGED
    return sources


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    return bool(a == b)


def sources_text(spec: TrainingSpec, draft: dict[str, Any]) -> str:
    """Which fields the person set and which are defaults, as lines a person reads under the spec."""
    sources = field_sources(spec, draft)
    values = spec.model_dump(mode="json")
    lines = []
    for source, title in (
        (Source.PERSON, "From you"),
        (Source.CHANGED, "Changed by Aegis"),
        (Source.DEFAULT, "Defaults (not said; tell me to change any)"),
    ):
        named = [f"{k}={values[k]}" for k, v in sources.items() if v == source]
        if named:
            lines.append(f"**{title}:** {', '.join(named)}")
    if optimizer_picks(draft):
        lines.append(f"target_gpu chosen by the optimizer: {spec.target_gpu}, the cheapest catalog GPU that fits.")
    return "\n".join(lines)
