"""From a person's words to a validated TrainingSpec: the request schema, the rule parser, the merge.

The chat model fills ``SpecRequest`` through structured output; the offline planner fills it with
``parse_request``. Either way the result is merged with what earlier turns said and validated by
``TrainingSpec``; what is missing or wrong comes back as a question in plain words.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.core.catalog import gpu_names
from tools.core.errors import SpecError
from tools.core.spec import TrainingSpec, parse_spec
from tools.inputs.model_defaults import recipe_defaults


class SpecRequest(BaseModel):
    """What the person asked for. Every field is optional: unsaid means default."""

    model_config = ConfigDict(extra="ignore")

    method: str | None = Field(default=None, description="lora, qlora or full_finetune")
    model_name: str | None = Field(default=None, description="Hugging Face id or local:NAME")
    dataset_path: str | None = Field(default=None, description="training data file path, exactly as written")
    eval_dataset_path: str | None = Field(default=None, description="held-out data file path, if given")
    num_epochs: int | None = None
    max_steps: int | None = None
    micro_batch_size: int | None = Field(default=None, description="the batch size")
    gradient_accumulation_steps: int | None = None
    learning_rate: float | None = None
    seq_len: int | None = None
    target_gpu: str | None = Field(
        default=None, description="t4, l4, a10g, l40s, a100-40gb, a100-80gb, h100, h200, b200, cpu"
    )
    num_gpus: int | None = None
    lora_r: int | None = None
    gradient_checkpointing: bool | None = None
    max_budget_usd: float | None = Field(default=None, description="only when the person asks to keep cost under X")


SPEC_FIELDS = set(TrainingSpec.model_fields)
_MODEL_ALIASES = {
    "smollm2": "local:smollm2-135m-instruct",
    "smollm": "local:smollm2-135m-instruct",
    "tiny-llama": "local:tiny-llama",
    "tinyllama": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    "llama-2-7b": "meta-llama/Llama-2-7b-hf",
    "llama 2 7b": "meta-llama/Llama-2-7b-hf",
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B",
    "llama 3 8b": "meta-llama/Meta-Llama-3-8B",
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
    "mistral 7b": "mistralai/Mistral-7B-v0.1",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
    "gpt2": "gpt2",
    "gpt-2": "gpt2",
}
_NUM = r"(\d+(?:\.\d+)?(?:e-?\d+)?)"
_PATH = r"((?:[\w./~-]+/)?[\w.-]+\.(?:jsonl|json|csv|parquet)\b|(?<!\S)(?:\.\./|/)[\w./-]+)"


def parse_request(text: str) -> SpecRequest:
    """Rule-based intent parsing for the offline planner. Deterministic; unsaid fields stay None."""
    t = " ".join(text.split())
    low = t.lower()
    out: dict[str, Any] = {}
    for read in (_method, _model, _data, _numbers, _gpu, _budget):
        read(t, low, out)
    return SpecRequest.model_validate(out)


def _method(t: str, low: str, out: dict[str, Any]) -> None:
    if re.search(r"\bq-?lora\b|4-?bit", low):
        out["method"] = "qlora"
    elif re.search(r"\blora\b|adapter", low):
        out["method"] = "lora"
    elif re.search(r"full[ -]?fine[ -]?tun|full[ -]?finetun|full parameter", low):
        out["method"] = "full_finetune"


def _model(t: str, low: str, out: dict[str, Any]) -> None:
    if m := re.search(r"\b(local:[\w.-]+)", t):
        out["model_name"] = m.group(1)
    elif m := re.search(r"\b([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)\b(?<!\.jsonl)(?<!\.json)(?<!\.csv)(?<!\.parquet)", t):
        if not re.search(r"\.(jsonl|json|csv|parquet)$", m.group(1)) and "data/" not in m.group(1):
            out["model_name"] = m.group(1)
    if "model_name" not in out:
        for alias, name in _MODEL_ALIASES.items():
            if re.search(rf"(?<![\w-]){re.escape(alias)}(?![\w-])", low):
                out["model_name"] = name
                break


def _data(t: str, low: str, out: dict[str, Any]) -> None:
    if m := re.search(
        rf"(?:eval(?:uation)? (?:data|set|dataset|file)|held[- ]out(?: data| set)?)\s*(?:in|at|from|=|:)?\s*{_PATH}",
        t,
        re.I,
    ):
        out["eval_dataset_path"] = m.group(1)
    paths = [p for p in re.findall(_PATH, t) if p != out.get("eval_dataset_path")]
    if paths:
        out["dataset_path"] = paths[0]


def _numbers(t: str, low: str, out: dict[str, Any]) -> None:
    if m := re.search(rf"{_NUM}\s*epochs?\b", low):
        out["num_epochs"] = int(float(m.group(1)))
    elif re.search(r"\b(one|an?) epoch\b", low):
        out["num_epochs"] = 1
    if m := re.search(r"(?:for|max(?:imum)?|at most)\s*(\d+)\s*(?:training )?steps\b", low):
        out["max_steps"] = int(m.group(1))
    if m := re.search(r"(?:micro[- ]?)?batch(?:[- ]size)?\s*(?:of|=|:)?\s*(\d+)", low):
        out["micro_batch_size"] = int(m.group(1))
    if m := re.search(r"(?:gradient accumulation|grad(?:ient)? acc(?:um)?)\s*(?:of|=|:)?\s*(\d+)", low):
        out["gradient_accumulation_steps"] = int(m.group(1))
    if m := re.search(rf"(?:learning rate|lr)\s*(?:of|=|:)?\s*{_NUM}", low):
        out["learning_rate"] = float(m.group(1))
    if m := re.search(r"(?:seq(?:uence)?[_ -]?len(?:gth)?|context(?: length)?|max length)\s*(?:of|=|:)?\s*(\d+)", low):
        out["seq_len"] = int(m.group(1))
    if m := re.search(r"(?:rank|lora[_ ]r|\br)\s*(?:of|=|:)?\s*(\d+)\b", low):
        out["lora_r"] = int(m.group(1))
    if re.search(r"gradient checkpointing|activation checkpointing", low):
        out["gradient_checkpointing"] = not re.search(
            r"(?:no|without|disable) (?:gradient|activation) checkpointing", low
        )


def _gpu(t: str, low: str, out: dict[str, Any]) -> None:
    gpus = sorted(gpu_names(), key=len, reverse=True)
    gpu_re = "|".join(re.escape(g) for g in gpus) + r"|a100"
    if m := re.search(rf"(\d+)\s*(?:x|×)\s*({gpu_re})\b|\b(\d+)\s+({gpu_re})s?\b", low):
        count, gpu = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        out["num_gpus"], out["target_gpu"] = int(count), gpu
    elif m := re.search(rf"(?<![\w-])({gpu_re})(?![\w-])", low):
        out["target_gpu"] = m.group(1)
    elif m := re.search(r"\bon (?:an? |the |\d+ ?x ?)?([a-z][\w.-]*)\s+gpus?\b", low):
        out["target_gpu"] = m.group(1)  # an unknown GPU is kept, so validation names it instead of a default
    if out.get("target_gpu") == "a100":
        out["target_gpu"] = "a100-40gb"


def _budget(t: str, low: str, out: dict[str, Any]) -> None:
    if m := re.search(
        r"(?:under|below|less than|at most|max(?:imum)?|budget(?: of)?|cap(?: it)? at|no more than)\s*\$\s*(\d+(?:\.\d+)?)",
        low,
    ):
        out["max_budget_usd"] = float(m.group(1))
    elif m := re.search(r"(?:under|below|less than|at most|budget of)\s*(\d+(?:\.\d+)?)\s*(?:usd|dollars?)", low):
        out["max_budget_usd"] = float(m.group(1))


def merge_request(draft: dict[str, Any], request: SpecRequest) -> dict[str, Any]:
    """Later turns override earlier ones, field by field; unsaid fields keep what was said before."""
    merged = dict(draft)
    merged.update({k: v for k, v in request.model_dump().items() if v is not None})
    return merged


def build_spec(draft: dict[str, Any]) -> tuple[TrainingSpec | None, str | None]:
    """A validated spec, or a question/explanation for the person naming what is missing or wrong."""
    missing = [
        name
        for name, hint in (
            ("dataset_path", "which dataset file to train on (e.g. data/sample.jsonl)"),
            ("model_name", "which model to fine-tune (e.g. local:tiny-llama)"),
        )
        if not draft.get(name)
    ]
    if missing:
        needs = {
            "dataset_path": "which dataset file to train on (for example data/sample.jsonl)",
            "model_name": "which model to fine-tune (for example local:smollm2-135m-instruct)",
        }
        asks = " and ".join(needs[name] for name in missing)
        return None, f"Before I can estimate anything I need to know {asks}."
    fields = recipe_defaults(draft["model_name"])
    fields.update({k: v for k, v in draft.items() if k in SPEC_FIELDS and v is not None})
    try:
        return parse_spec(fields), None
    except SpecError as exc:
        lines = "\n".join(f"- {p}" for p in exc.problems)
        return None, f"I could not build a valid training spec from that:\n{lines}\nPlease correct it and ask again."
