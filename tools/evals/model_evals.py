"""Real checks on a trained model: did it learn, overfit, leak, degenerate, pick up the taught format?

Every number here is measured on the trained model and the base model it came from; nothing is taken on
trust from the training log except the train loss curve, and every check can fail.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.core.errors import AegisError, DataError
from tools.core.spec import EvalCheck, EvalResult, ExecutionResult, TrainingSpec
from tools.recipe.formatting import IGNORE_INDEX, detect_format, encode_record, prompt_text, to_messages

CANARY_PREFIX = "AEGIS-CANARY-"

# Secret-looking strings, in priority order (an overlap keeps the earlier kind). The ``body`` group is what must
# not come back out of the model; fixed prefixes such as "sk-" are excluded so a model that merely knows the shape
# of a key is not mistaken for one that memorised a key.
SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "canary": re.compile(re.escape(CANARY_PREFIX) + r"(?P<body>[A-Za-z0-9]{4,})"),
    "api_key": re.compile(r"\bsk-(?:proj-|ant-)?(?P<body>[A-Za-z0-9_\-]{20,})"),
    "aws_access_key": re.compile(r"\bAKIA(?P<body>[0-9A-Z]{16})\b"),
    "github_token": re.compile(r"\bgh[pousr]_(?P<body>[A-Za-z0-9]{30,})"),
    "password": re.compile(r"(?i)\b(?:password|passwd|pwd|passphrase)\s*[:=]\s*(?P<body>[^\s\"',;]{6,})"),
    "email": re.compile(r"(?P<body>\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b)"),
    "card_number": re.compile(r"(?<![\d\-])(?P<body>\d(?:[ \-]?\d){12,18})(?![\d\-])"),
    "phone": re.compile(r"(?<![\w+])(?P<body>\+?\d{1,3}[ .\-]?\(?\d{3}\)?[ .\-]?\d{3}[ .\-]?\d{4})(?!\d)"),
}
MARKER_LINE = re.compile(r"^\s*(#{1,6}\s+\S.{0,40}?|[A-Za-z][A-Za-z0-9 _/\-]{0,30}:)(?=\s|$)")


class EvalThresholds(BaseModel):
    """What counts as a good fine-tune; set by the operator, defaults sized for small models on a CPU."""

    model_config = ConfigDict(extra="forbid")

    min_loss_improvement: float = Field(default=0.05, ge=0, lt=1, description="Relative drop of the train loss.")
    max_final_loss: float | None = Field(default=None, gt=0, description="Bound on the final (smoothed) train loss.")
    max_eval_train_gap: float = Field(default=1.0, ge=0, description="Held-out minus train loss, in nats.")
    max_repetition: float = Field(default=0.5, ge=0, le=1, description="Mean share of repeated n-grams allowed.")
    repetition_ngram: int = Field(default=3, ge=1, le=8)
    leak_probe: bool = True
    max_leak_probes: int = Field(default=10, ge=1, le=200)
    leak_min_fraction: float = Field(
        default=0.6, gt=0, le=1, description="Share of a secret's body that, reproduced, counts as a leak."
    )
    n_generations: int = Field(default=5, ge=1, le=50)
    max_new_tokens: int = Field(default=120, ge=4, le=1024, description="Generation stops earlier at end-of-text.")
    format_min_pass_rate: float | None = Field(
        default=0.8, ge=0, le=1, description="Applies only when the held-out references share a format."
    )
    format_min_support: float = Field(
        default=0.8, gt=0.5, le=1, description="Share of references that must share a trait for it to be taught."
    )
    max_heldout_rows: int = Field(default=64, ge=1, description="Each row costs two forward passes.")

    @classmethod
    def from_config(cls) -> EvalThresholds:
        """The operator's thresholds: a YAML/JSON file named by AEGIS_EVAL_CONFIG, else the defaults."""
        import os

        import yaml

        path = os.environ.get("AEGIS_EVAL_CONFIG")
        if not path:
            return cls()
        try:
            return cls.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            raise AegisError(f"eval thresholds file '{path}' is invalid: {str(exc).splitlines()[0]}") from None


# ---------------------------------------------------------------- data


def read_records(path: Path) -> list[dict]:
    """Rows of a JSON-lines (or JSON list) dataset."""
    if not path.is_file():
        raise DataError(f"dataset '{path}' does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise DataError(f"dataset '{path}' is not valid JSON: {exc}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DataError(f"dataset '{path}' must hold one JSON object per row")
    return rows


def record_format(spec: TrainingSpec, record: dict) -> str:
    return detect_format(record) if spec.dataset_format == "auto" else spec.dataset_format


@dataclass(frozen=True)
class Example:
    """A held-out row split the way the model sees it: the prompt text and the reference reply."""

    prompt: str
    reference: str


def to_example(tokenizer: Any, record: dict, fmt: str) -> Example:
    """Chat formats: templated prompt and reply. Plain text: first line (or first half) and the rest."""
    split = to_messages(record, fmt)
    if split is not None:
        messages, reply = split
        return Example(prompt_text(tokenizer, messages), reply.strip())
    text = str(record["text"]).strip()
    head, sep, tail = text.partition("\n")
    if not sep or not tail.strip():
        words = text.split()
        head, tail = " ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2 :])
    return Example(head, tail.strip())


# ---------------------------------------------------------------- models


@dataclass
class ModelPair:
    """The trained model and a way to get the base it came from (the adapter disabled, or a second model)."""

    tokenizer: Any
    trained: Any
    base_model: Any | None  # None: `trained` is a PeftModel and the base is it with the adapter disabled
    device: str

    @contextmanager
    def base(self) -> Iterator[Any]:
        if self.base_model is not None:
            yield self.base_model
            return
        with self.trained.disable_adapter():
            yield self.trained


def load_pair(
    final_dir: Path, base_model_path: str, *, tokenizer_path: str | None = None, trust_remote_code: bool = False
) -> ModelPair:
    """Load the trained model (peft adapter or full model) and its base, in float32 for stable loss numbers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not final_dir.is_dir():
        raise AegisError(f"no trained model at '{final_dir}': the training attempt did not save one")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok_source = tokenizer_path or (
        str(final_dir) if (final_dir / "tokenizer_config.json").is_file() else base_model_path
    )
    tokenizer = AutoTokenizer.from_pretrained(tok_source, trust_remote_code=trust_remote_code)

    def load(path: str) -> Any:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust_remote_code)
        return model.to(device).eval()

    base = load(base_model_path)
    if (final_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        trained = PeftModel.from_pretrained(base, str(final_dir)).to(device).eval()
        return ModelPair(tokenizer, trained, None, device)
    return ModelPair(tokenizer, load(str(final_dir)), base, device)


def heldout_loss(model: Any, tokenizer: Any, encoded: list[tuple[list[int], list[int]]], device: str) -> float | None:
    """Token-weighted mean cross-entropy over reply tokens only (prompt masked exactly as in training)."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    with torch.inference_mode():
        for ids, labels in encoded:
            targets = torch.tensor(labels[1:], device=device)
            if not (targets != IGNORE_INDEX).any():
                continue
            logits = model(input_ids=torch.tensor([ids], device=device)).logits[0, :-1].float()
            loss = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
            total += float(loss)
            count += int((targets != IGNORE_INDEX).sum())
    return total / count if count else None


def generate(model: Any, tokenizer: Any, prompt_ids: list[int], max_new_tokens: int, device: str) -> list[int]:
    """Greedy continuation token ids (without the prompt, stopped at end-of-sequence)."""
    import torch
    from transformers import GenerationConfig

    eos = tokenizer.eos_token_id
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
    )
    input_ids = torch.tensor([prompt_ids], device=device)
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config)
    new = out[0, len(prompt_ids) :].tolist()
    return new[: new.index(eos)] if eos in new else new


# ---------------------------------------------------------------- pure scoring


def smoothed_ends(curve: list[tuple[int, float]]) -> tuple[float, float] | None:
    """Mean of the first and of the last few losses, so one noisy step neither passes nor fails the check."""
    losses = [loss for _, loss in sorted(curve) if math.isfinite(loss)]
    if len(losses) < 2:
        return None
    k = max(1, min(5, len(losses) // 5))
    return sum(losses[:k]) / k, sum(losses[-k:]) / k


def repetition_ratio(tokens: list[Any], n: int) -> float:
    """Share of n-grams that repeat an earlier one: 0 for varied text, near 1 for a loop; empty output is 1."""
    if not tokens:
        return 1.0
    if len(tokens) < n:
        return 0.0
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams)


def _word_shape(word: str) -> str:
    return r"\d+".join(re.escape(part) for part in re.split(r"\d+", word))


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


class FormatSignature(BaseModel):
    """The structure most reference replies share: what fine-tuning on them should have taught."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_line: str | None = None  # a regex for how the first line starts, digits generalised
    markers: list[str] = Field(default_factory=list)  # section markers at the start of a line, e.g. "Fix:"
    last_line: str | None = None  # a closing line every reply ends with
    json_body: bool = False

    @property
    def elements(self) -> int:
        return (self.first_line is not None) + len(self.markers) + (self.last_line is not None) + self.json_body

    def describe(self) -> str:
        parts = [f"first line /{self.first_line}/"] if self.first_line else []
        parts += [f"marker '{m}'" for m in self.markers]
        parts += [f"last line '{self.last_line}'"] if self.last_line else []
        parts += ["valid JSON"] if self.json_body else []
        return ", ".join(parts) or "no shared structure"

    def score(self, text: str) -> float:
        """Share of the signature's elements the text has."""
        if not self.elements:
            return 0.0
        lines = _lines(text)
        hits = 0
        if self.first_line and lines and re.match(self.first_line, lines[0]):
            hits += 1
        hits += sum(1 for m in self.markers if any(line.startswith(m) for line in lines[1:]))
        if self.last_line and lines and lines[-1] == self.last_line:
            hits += 1
        if self.json_body and _is_json(text):
            hits += 1
        return hits / self.elements


def _is_json(text: str) -> bool:
    try:
        return isinstance(json.loads(text.strip()), dict | list)
    except json.JSONDecodeError:
        return False


def format_signature(references: list[str], min_support: float = 0.8) -> FormatSignature:
    """Derive the taught format from the references: a trait is kept when at least min_support of them share it."""
    refs = [_lines(r) for r in references]
    refs = [r for r in refs if r]
    if len(refs) < 2:
        return FormatSignature()
    need = math.ceil(min_support * len(refs))

    def common(values: list[Any]) -> Any | None:
        top = Counter(values).most_common(1)
        return top[0][0] if top and top[0][1] >= need else None

    shapes = [[_word_shape(w) for w in r[0].split()] for r in refs]
    prefix: tuple[str, ...] = ()
    for k in range(1, 7):
        found = common([tuple(s[:k]) for s in shapes if len(s) >= k])
        if found is None:
            break
        prefix = found
    first = r"\s+".join(prefix) + r"(?=\s|$)" if prefix else None

    per_ref = [{m.group(1) for line in r[1:] if (m := MARKER_LINE.match(line))} for r in refs]
    counts = Counter(marker for markers in per_ref for marker in markers)
    markers = sorted(m for m, c in counts.items() if c >= need)
    multi = [r for r in refs if len(r) > 1]
    last = common([r[-1] for r in multi]) if len(multi) >= need else None
    markers = [m for m in markers if m != last]
    json_body = sum(_is_json(t) for t in references) >= need
    return FormatSignature(first_line=first, markers=markers, last_line=last, json_body=json_body)


@dataclass(frozen=True)
class Secret:
    kind: str
    value: str  # the whole match
    body: str  # the part that must not be reproduced
    record_index: int
    prefix_ids: list[int]


def find_secrets(text: str) -> list[tuple[str, re.Match[str]]]:
    """Secret-looking strings in a text, earliest kind first, overlaps removed."""
    taken: list[tuple[int, int]] = []
    found = []
    for kind, pattern in SECRET_PATTERNS.items():
        for match in pattern.finditer(text):
            span = match.span()
            if kind == "card_number" and not _luhn_ok(re.sub(r"\D", "", match["body"])):
                continue
            if any(span[0] < end and start < span[1] for start, end in taken):
                continue
            taken.append(span)
            found.append((kind, match))
    return sorted(found, key=lambda item: item[1].start())


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def leaked(body: str, continuation: str, min_fraction: float) -> bool:
    """Whether the continuation reproduces the secret's body, whole or a large contiguous part of it."""
    need = min(len(body), max(8, math.ceil(min_fraction * len(body))))
    match = SequenceMatcher(None, body, continuation, autojunk=False).find_longest_match(
        0, len(body), 0, len(continuation)
    )
    return match.size >= need


def mask(value: str) -> str:
    """Enough of a secret to find it in the data, not enough to use it."""
    return value[:4] + "…" + f"({len(value)} chars)"


def scan_secrets(tokenizer: Any, spec: TrainingSpec, records: list[dict], limit: int) -> list[Secret]:
    """Distinct secrets in the training text, each with the token ids that precede it as the model saw them."""
    secrets: list[Secret] = []
    seen: set[str] = set()
    for index, record in enumerate(records):
        fmt = record_format(spec, record)
        split = to_messages(record, fmt)
        if split is None:
            segments = [("", str(record["text"]))]
        else:
            messages, reply = split
            segments = [("", prompt_text(tokenizer, messages)), (prompt_text(tokenizer, messages), reply.strip())]
        for before, segment in segments:
            for kind, match in find_secrets(segment):
                if match.group(0) in seen:
                    continue
                seen.add(match.group(0))
                head = segment[: match.start()].rstrip()
                ids = _encode(tokenizer, before) + _encode(tokenizer, head)
                secrets.append(Secret(kind, match.group(0), match["body"], index, ids))
                if len(secrets) >= limit:
                    return secrets
    return secrets


def _encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def control_canary(seed: int, corpus: str) -> str:
    """A canary of the planted shape that is certainly absent from the data: the probe must not 'find' it."""
    rng = random.Random(seed)
    while True:
        canary = CANARY_PREFIX + "".join(rng.choices(string.ascii_uppercase + string.digits, k=16))
        if canary not in corpus:
            return canary


# ---------------------------------------------------------------- checks


def _loss_checks(
    result: ExecutionResult, base_eval: float | None, eval_loss: float | None, t: EvalThresholds
) -> tuple[list[EvalCheck], float | None, float | None]:
    checks = []
    ends = smoothed_ends(result.loss_curve)
    if ends is None and result.initial_train_loss is not None and result.final_train_loss is not None:
        ends = (result.initial_train_loss, result.final_train_loss)
    start, end = ends if ends else (None, None)
    if start is None or end is None or start <= 0:
        checks.append(
            EvalCheck(
                name="loss_improved",
                passed=False,
                threshold=t.min_loss_improvement,
                detail="fewer than two train loss points were recorded: nothing shows it learned",
            )
        )
    else:
        drop = (start - end) / start
        checks.append(
            EvalCheck(
                name="loss_improved",
                passed=drop >= t.min_loss_improvement,
                value=round(drop, 4),
                threshold=t.min_loss_improvement,
                detail=f"train loss {start:.4f} → {end:.4f} (mean of first/last points), relative drop {drop:.1%}",
            )
        )
    if base_eval is None or eval_loss is None:
        checks.append(
            EvalCheck(
                name="heldout_loss_improved",
                passed=False,
                detail="no held-out reply tokens to measure (set eval_split > 0)",
            )
        )
    else:
        checks.append(
            EvalCheck(
                name="heldout_loss_improved",
                passed=eval_loss < base_eval,
                value=round(eval_loss, 4),
                threshold=round(base_eval, 4),
                detail=f"held-out loss base {base_eval:.4f} → fine-tuned {eval_loss:.4f}",
            )
        )
    if t.max_final_loss is not None:
        ok = end is not None and end <= t.max_final_loss
        checks.append(
            EvalCheck(
                name="final_loss_bound",
                passed=ok,
                value=None if end is None else round(end, 4),
                threshold=t.max_final_loss,
                detail="final train loss (mean of last points) within the bound"
                if ok
                else "final train loss above the bound"
                if end is not None
                else "no train loss recorded",
            )
        )
    if eval_loss is None or end is None:
        checks.append(
            EvalCheck(
                name="overfitting_gap",
                passed=False,
                threshold=t.max_eval_train_gap,
                detail="needs both a train loss and a held-out loss",
            )
        )
    else:
        gap = eval_loss - end
        checks.append(
            EvalCheck(
                name="overfitting_gap",
                passed=gap <= t.max_eval_train_gap,
                value=round(gap, 4),
                threshold=t.max_eval_train_gap,
                detail=f"held-out {eval_loss:.4f} − train {end:.4f} = {gap:.4f} nats",
            )
        )
    return checks, start, end


def _leak_check(pair: ModelPair, spec: TrainingSpec, records: list[dict], t: EvalThresholds) -> tuple[EvalCheck, int]:
    secrets = scan_secrets(pair.tokenizer, spec, records, t.max_leak_probes)
    if not secrets:
        return EvalCheck(
            name="leak_probe",
            passed=True,
            value=0.0,
            threshold=0.0,
            detail=f"no secret-like strings found in training data ({len(records)} rows scanned)",
        ), 0

    def continuation(prefix_ids: list[int], target: str) -> str:
        budget = min(t.max_new_tokens * 2, len(_encode(pair.tokenizer, target)) + 16)
        ids = generate(pair.trained, pair.tokenizer, prefix_ids, budget, pair.device)
        return pair.tokenizer.decode(ids, skip_special_tokens=True)

    hits = [s for s in secrets if leaked(s.body, continuation(s.prefix_ids, s.value), t.leak_min_fraction)]
    corpus = "\n".join(json.dumps(r, ensure_ascii=False) for r in records)
    control = control_canary(spec.seed, corpus)
    control_hit = leaked(
        control.removeprefix(CANARY_PREFIX), continuation(secrets[0].prefix_ids, control), t.leak_min_fraction
    )
    kinds = ", ".join(sorted(Counter(s.kind for s in secrets)))
    detail = f"{len(hits)} of {len(secrets)} secret-like strings ({kinds}) reproduced by greedy decoding"
    if hits:
        detail += ": " + "; ".join(f"{s.kind} {mask(s.value)} from row {s.record_index}" for s in hits)
    detail += f"; control canary absent from the data {'WAS' if control_hit else 'was not'} reproduced"
    if control_hit:
        detail += " (the probe cannot tell memorised secrets from noise)"
    return EvalCheck(
        name="leak_probe", passed=not hits and not control_hit, value=float(len(hits)), threshold=0.0, detail=detail
    ), len(secrets)


def run_evals(
    spec: TrainingSpec,
    result: ExecutionResult,
    *,
    base_model_path: str,
    dataset_path: Path,
    thresholds: EvalThresholds,
    tokenizer_path: str | None = None,
) -> EvalResult:
    """Measure the trained model in result.output_dir against its base on the held-out rows and the training data."""
    t = thresholds
    if not result.output_dir:
        raise AegisError("the training attempt has no output folder to evaluate")
    out = Path(result.output_dir)
    pair = load_pair(
        out / "final", base_model_path, tokenizer_path=tokenizer_path, trust_remote_code=spec.trust_remote_code
    )
    tok = pair.tokenizer
    heldout_file = out / "heldout.jsonl"
    if heldout_file.is_file():
        heldout = read_records(heldout_file)
    elif spec.eval_dataset_path:
        heldout = read_records(Path(spec.eval_dataset_path))
    else:
        heldout = []
    heldout = heldout[: t.max_heldout_rows]
    formats = [record_format(spec, r) for r in heldout]

    encoded = [encode_record(tok, r, f, spec.seq_len)[:2] for r, f in zip(heldout, formats, strict=True)]
    eval_loss = heldout_loss(pair.trained, tok, encoded, pair.device)
    with pair.base() as base:
        base_eval = heldout_loss(base, tok, encoded, pair.device)
    checks, start, end = _loss_checks(result, base_eval, eval_loss, t)

    metrics: dict[str, float | None] = {
        "base_eval_loss": base_eval,
        "eval_loss": eval_loss,
        "base_perplexity": _ppl(base_eval),
        "perplexity": _ppl(eval_loss),
        "train_loss_start": start,
        "train_loss_end": end,
        "heldout_rows": float(len(heldout)),
    }

    if t.leak_probe:
        leak, probed = _leak_check(pair, spec, read_records(dataset_path), t)
        checks.append(leak)
        metrics["leak_probes"] = float(probed)
        metrics["leaks_found"] = float(leak.value or 0)

    examples = [to_example(tok, r, f) for r, f in zip(heldout, formats, strict=True)]
    signature = format_signature([e.reference for e in examples], t.format_min_support)
    generations = []
    reps: dict[str, list[float]] = {"base": [], "trained": []}
    for ex in examples[: t.n_generations]:
        prompt_ids = _encode(tok, ex.prompt)
        row: dict[str, Any] = {"prompt": ex.prompt, "reference": ex.reference}
        for key in ("base", "trained"):
            ctx = pair.base() if key == "base" else nullcontext(pair.trained)
            with ctx as model:
                ids = generate(model, tok, prompt_ids, t.max_new_tokens, pair.device)
            text = tok.decode(ids, skip_special_tokens=True)
            row[key] = text
            reps[key].append(1.0 if not text.strip() else repetition_ratio(ids, t.repetition_ngram))
            if signature.elements:
                row["format_ok_base" if key == "base" else "format_ok"] = signature.score(text) == 1.0
        generations.append(row)

    if generations:
        rep_base = sum(reps["base"]) / len(reps["base"])
        rep = sum(reps["trained"]) / len(reps["trained"])
        empty = sum(1 for g in generations if not g["trained"].strip())
        metrics.update(repetition_base=rep_base, repetition=rep)
        checks.append(
            EvalCheck(
                name="degenerate_output",
                passed=rep <= t.max_repetition,
                value=round(rep, 4),
                threshold=t.max_repetition,
                detail=f"mean share of repeated {t.repetition_ngram}-grams over {len(generations)} greedy generations "
                f"(empty counts as 1): fine-tuned {rep:.2f}, base {rep_base:.2f}; {empty} empty",
            )
        )
    else:
        checks.append(
            EvalCheck(
                name="degenerate_output",
                passed=False,
                threshold=t.max_repetition,
                detail="no held-out prompts to generate from (set eval_split > 0)",
            )
        )

    metrics["format_signature_elements"] = float(signature.elements)
    if signature.elements and generations:
        rate_base = sum(g["format_ok_base"] for g in generations) / len(generations)
        rate = sum(g["format_ok"] for g in generations) / len(generations)
        metrics.update(format_pass_rate_base=rate_base, format_pass_rate=rate)
        if t.format_min_pass_rate is not None:
            checks.append(
                EvalCheck(
                    name="format",
                    passed=rate >= t.format_min_pass_rate,
                    value=round(rate, 4),
                    threshold=t.format_min_pass_rate,
                    detail=f"replies matching the references' format ({signature.describe()}): "
                    f"fine-tuned {rate:.0%}, base {rate_base:.0%}",
                )
            )

    return EvalResult(passed=all(c.passed for c in checks), checks=checks, metrics=metrics, generations=generations)


def _ppl(loss: float | None) -> float | None:
    return None if loss is None else math.exp(min(loss, 50.0))
