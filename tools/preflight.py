"""Free, local checks that must pass before anything costs money or a person is asked for it.

A run that could never have worked should fail here, in seconds and for nothing, not after a GPU
started: the dataset parses in its format, every row renders through the model's chat template and
keeps at least one target token after masking and truncation at ``seq_len``, the rendered script is
valid Python that accepts its own config, and, for a run bound for a GPU, the very same script runs
two training steps on this CPU on a shrunken model of the same architecture and the same data.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tools.dataset import (
    APPROX_CHARS_PER_TOKEN,
    approx_token_count,
    load_records,
    load_tokenizer_offline,
    resolve_format,
    tokenizer_name,
)
from tools.errors import AegisError
from tools.paths import aegis_home, model_cache_dir, resolve_dataset_path
from tools.spec import TrainingSpec

SMOKE_STEPS = 2
SMOKE_TIMEOUT_S = 900.0
SMOKE_MAX_MICRO_BATCH = 2  # the smoke run checks the code path, not memory; logits of a big vocab add up
ROWS_NAMED = 5
TRUNCATION_WARN_SHARE = 0.25
# A few layers of the same architecture at a width a CPU trains in seconds.
SHRUNK_LAYERS = 2
SHRUNK_WIDTH = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "head_dim": 16}

CheckStatus = Literal["pass", "warn", "fail"]


class PreflightCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    status: CheckStatus
    detail: str


class PreflightReport(BaseModel):
    """What pre-flight found for one spec; the gate and the run guard read ``passed`` for the same spec hash."""

    model_config = ConfigDict(extra="forbid")

    spec_hash: str
    passed: bool
    checks: list[PreflightCheck]
    rows: int = 0
    truncated_rows: int = 0
    truncated_share: float = 0.0
    tokenizer: str = ""
    smoke: dict[str, Any] | None = None

    @property
    def failures(self) -> list[PreflightCheck]:
        return [c for c in self.checks if c.status == "fail"]

    def summary(self) -> str:
        if self.passed:
            warned = [c.detail for c in self.checks if c.status == "warn"]
            return "pre-flight passed" + (f" with warnings: {'; '.join(warned)}" if warned else "")
        return "pre-flight failed: " + "; ".join(f"{c.name}: {c.detail}" for c in self.failures)


# -- data ---------------------------------------------------------------------------------------


def _load_tokenizer(model_name: str) -> Any | None:
    """The model's own tokenizer: on this machine, or from the hub when it answers; None when neither."""
    from tools.local_models import hub_reachable
    from tools.model_config import hub_id

    tokenizer = load_tokenizer_offline(model_name)
    if tokenizer is None and hub_reachable() and not model_name.lower().startswith("local:"):
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(hub_id(model_name), trust_remote_code=False)
        except Exception:  # gated, missing or no tokenizer files: the check falls back to chars/4
            tokenizer = None
    return tokenizer


def _rows_named(numbers: list[int]) -> str:
    named = ", ".join(str(n) for n in numbers[:ROWS_NAMED])
    more = len(numbers) - ROWS_NAMED
    return named + (f" and {more} more" if more > 0 else "")


def check_rows(
    records: list[dict[str, Any]], fmt: str, tokenizer: Any | None, seq_len: int, *, source: str
) -> tuple[list[PreflightCheck], int]:
    """Render every row as the script will and find rows left with nothing to learn; returns checks and truncations.

    Exact with the model's tokenizer. Without it the prompt length is approximated (chars/4), so a row
    that seems to lose its reply is a warning, not a failure.
    """
    from tools.formatting import IGNORE_INDEX, encode_record, prompt_text, to_messages

    empty, template_errors, truncated, longest_prompt = [], [], 0, 0
    for number, record in enumerate(records, start=1):
        if tokenizer is None:
            split = to_messages(record, fmt)
            total = approx_token_count(record, fmt)
            prompt = 0 if split is None else math.ceil(len(prompt_text(None, split[0])) / APPROX_CHARS_PER_TOKEN)
            truncated += total > seq_len
            if prompt >= seq_len - 1 or (split is None and total < 2):
                empty.append(number)
                longest_prompt = max(longest_prompt, prompt)
            continue
        try:
            ids, labels, was_truncated = encode_record(tokenizer, record, fmt, seq_len)
        except Exception as exc:  # a chat template raises its own errors (roles out of order, unknown role)
            template_errors.append(
                f"row {number}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            )
            continue
        truncated += was_truncated
        if all(label == IGNORE_INDEX for label in labels[1:]):
            empty.append(number)
            _full_ids, full_labels, _ = encode_record(tokenizer, record, fmt, 1 << 62)
            longest_prompt = max(longest_prompt, sum(label == IGNORE_INDEX for label in full_labels))
    checks = []
    if template_errors:
        checks.append(
            PreflightCheck(
                name="chat_template",
                status="fail",
                detail=f"{source}: the chat template cannot render {len(template_errors)} row(s): "
                + "; ".join(template_errors[:ROWS_NAMED])
                + ". Fix the roles of those rows (user/assistant, in turn) or use a model whose template accepts them",
            )
        )
    if empty:
        needed = longest_prompt + 2
        exact = tokenizer is not None
        fix = (
            f"raise seq_len to at least {needed} (the longest such prompt is {longest_prompt} tokens), "
            "or shorten or remove those rows"
            if longest_prompt
            else "remove those rows or give them text"
        )
        checks.append(
            PreflightCheck(
                name="target_tokens",
                status="fail" if exact else "warn",
                detail=f"{source}: {len(empty)} row(s) keep no target token after masking and truncation at "
                f"seq_len {seq_len} (rows {_rows_named(empty)}){'' if exact else ', by a chars/4 estimate'}; {fix}",
            )
        )
    else:
        checks.append(
            PreflightCheck(
                name="target_tokens",
                status="pass",
                detail=f"{source}: all {len(records)} rows keep target tokens at seq_len {seq_len}",
            )
        )
    return checks, truncated


def _sample_check(records: list[dict[str, Any]], fmt: str, tokenizer: Any | None, source: str) -> PreflightCheck:
    """The first row as the model will see it, so a person can spot a wrong template at a glance."""
    from tools.formatting import prompt_text, to_messages

    split = to_messages(records[0], fmt)
    if split is None:
        return PreflightCheck(name="rendering", status="pass", detail=f"{source}: plain text rows (no chat template)")
    try:
        text = prompt_text(tokenizer, split[0]) + split[1].strip()
    except Exception as exc:  # named as a failure of row 1; check_rows names every other row
        return PreflightCheck(name="rendering", status="fail", detail=f"{source} row 1 does not render: {exc}")
    how = "the model's chat template" if tokenizer is not None and tokenizer.chat_template else "the plain template"
    shown = text if len(text) <= 240 else text[:240] + "…"
    return PreflightCheck(name="rendering", status="pass", detail=f"{source} row 1 through {how}: {shown!r}")


def check_data(spec: TrainingSpec, tokenizer: Any | None) -> tuple[list[PreflightCheck], int, int]:
    """Parse the training (and eval) file in the declared format and check every row; returns checks, rows, truncated."""
    from tools.errors import DataError

    checks, rows, truncated = [], 0, 0
    paths = [("training data", spec.dataset_path)]
    if spec.eval_dataset_path:
        paths.append(("eval data", spec.eval_dataset_path))
    for label, path in paths:
        source = f"{label} '{Path(path).name}'"
        try:
            records = load_records(path)
            fmt = resolve_format(records, spec.dataset_format, source=source)
        except DataError as exc:
            checks.append(PreflightCheck(name="dataset_parses", status="fail", detail=str(exc)))
            continue
        checks.append(
            PreflightCheck(
                name="dataset_parses", status="pass", detail=f"{source}: {len(records)} rows in format '{fmt}'"
            )
        )
        checks.append(_sample_check(records, fmt, tokenizer, source))
        row_checks, cut = check_rows(records, fmt, tokenizer, spec.seq_len, source=source)
        checks.extend(row_checks)
        if label == "training data":
            rows, truncated = len(records), cut
    return checks, rows, truncated


# -- script -------------------------------------------------------------------------------------


def check_script(config_path: Path) -> PreflightCheck:
    """The rendered script compiles and its own config reader accepts the config (no torch import needed)."""
    from tools.render import render_source

    source = render_source()
    try:
        code = compile(source, "train.py", "exec")
    except SyntaxError as exc:
        return PreflightCheck(name="script", status="fail", detail=f"train.py is not valid Python: {exc}")
    namespace: dict[str, Any] = {"__name__": "aegis_preflight"}
    exec(code, namespace)  # defines functions only: the script runs main() under __main__ alone
    try:
        namespace["load_config"](config_path)
    except namespace["RecipeFailure"] as exc:
        return PreflightCheck(name="script", status="fail", detail=f"train.py refuses its config: {exc}")
    return PreflightCheck(name="script", status="pass", detail="train.py compiles and accepts its config")


# -- the CPU smoke run --------------------------------------------------------------------------


def _fallback_tokenizer() -> tuple[Any, str]:
    from transformers import AutoTokenizer

    from tools.local_models import resolve_model

    path = resolve_model("local:tiny-llama").path
    return AutoTokenizer.from_pretrained(path), "local:tiny-llama"


def shrink_config(config: Any, vocab_size: int, special_ids: dict[str, int | None]) -> Any:
    """The same architecture with a few narrow layers: same model class, attention layout, norms and activations."""
    from transformers import AutoConfig

    values = config.to_dict()
    values.pop("quantization_config", None)
    model_type = values.pop("model_type")
    shrunk = AutoConfig.for_model(model_type, **values)
    heads = getattr(config, "num_attention_heads", None) or SHRUNK_WIDTH["num_attention_heads"]
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    updates: dict[str, Any] = {
        "num_hidden_layers": SHRUNK_LAYERS,
        "hidden_size": SHRUNK_WIDTH["hidden_size"],
        "num_attention_heads": SHRUNK_WIDTH["num_attention_heads"],
        "vocab_size": vocab_size,
        **{k: v for k, v in special_ids.items() if v is not None},
    }
    if hasattr(config, "num_key_value_heads"):
        updates["num_key_value_heads"] = SHRUNK_WIDTH["num_attention_heads"] // (2 if kv_heads < heads else 1)
    for key in ("intermediate_size", "head_dim"):
        if getattr(config, key, None) is not None:
            updates[key] = SHRUNK_WIDTH[key]
    if getattr(config, "n_inner", None) is not None:  # gpt2's name for the MLP width
        updates["n_inner"] = SHRUNK_WIDTH["intermediate_size"]
    for key, value in updates.items():
        setattr(shrunk, key, value)
    return shrunk


def build_shrunken_model(spec: TrainingSpec) -> tuple[Path, str]:
    """A random-weight model of the spec's architecture, saved once per config and tokenizer; returns path and note."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from tools.model_config import load_model_config

    config = load_model_config(spec.model_name, trust_remote_code=spec.trust_remote_code)
    tokenizer = _load_tokenizer(spec.model_name)
    tokenizer_name = spec.model_name
    if tokenizer is None:
        tokenizer, tokenizer_name = _fallback_tokenizer()
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    shrunk = shrink_config(config, len(tokenizer), special)
    digest = hashlib.sha256(
        json.dumps({"config": shrunk.to_dict(), "tokenizer": tokenizer_name}, sort_keys=True, default=str).encode()
    ).hexdigest()[:16]
    folder = model_cache_dir() / "shrunken" / f"{shrunk.model_type}-{digest}"
    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(shrunk, trust_remote_code=spec.trust_remote_code)
        partial = folder.with_name(folder.name + f".tmp{os.getpid()}")
        hf_logging.disable_progress_bar()  # a shard bar for a 1 MB model is noise
        try:
            model.save_pretrained(partial)
        finally:
            hf_logging.enable_progress_bar()
        tokenizer.save_pretrained(partial)
        try:
            partial.replace(folder)
        except OSError:  # another process saved the same model first
            shutil.rmtree(partial, ignore_errors=True)
    note = (
        f"{type(config).__name__.removesuffix('Config')} architecture, {SHRUNK_LAYERS} layers of width "
        f"{SHRUNK_WIDTH['hidden_size']}, random weights, tokenizer of {tokenizer_name}"
    )
    return folder, note


def smoke_spec(spec: TrainingSpec) -> tuple[TrainingSpec, list[str]]:
    """The spec as the CPU can run it, and what had to change (each change keeps the code path under test)."""
    updates: dict[str, Any] = {"num_gpus": 1, "precision": "auto"}
    changed = []
    if spec.method == "qlora":
        updates["method"] = "lora"
        changed.append("qlora runs as lora (4-bit kernels need CUDA)")
    if spec.micro_batch_size > SMOKE_MAX_MICRO_BATCH:
        updates["micro_batch_size"] = SMOKE_MAX_MICRO_BATCH
        changed.append(f"micro batch {spec.micro_batch_size} → {SMOKE_MAX_MICRO_BATCH}")
    if spec.gradient_accumulation_steps > 2:
        updates["gradient_accumulation_steps"] = 2
        changed.append(f"accumulation {spec.gradient_accumulation_steps} → 2")
    if spec.num_gpus > 1:
        changed.append(f"one process instead of {spec.num_gpus}")
    return TrainingSpec.model_validate({**spec.model_dump(), **updates}), changed


def _file_digest(path: str | None) -> str | None:
    if not path:
        return None
    return hashlib.sha256(resolve_dataset_path(path).read_bytes()).hexdigest()


def _smoke_cache_dir() -> Path:
    return Path(os.environ.get("AEGIS_PREFLIGHT_CACHE", aegis_home() / "preflight")).expanduser()


def _smoke_key(spec: TrainingSpec, model_folder: Path) -> str:
    """Everything the smoke run's outcome depends on: script, spec, data contents, model, library versions."""
    import peft
    import torch
    import transformers

    from tools.render import render_source

    material = {
        "script": hashlib.sha256(render_source().encode()).hexdigest(),
        "spec": spec.model_dump(mode="json", exclude={"target_gpu"}),
        "data": _file_digest(spec.dataset_path),
        "eval": _file_digest(spec.eval_dataset_path),
        "model": model_folder.name,
        "versions": [torch.__version__, transformers.__version__, peft.__version__],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:24]


def smoke_run(spec: TrainingSpec, workdir: Path) -> tuple[PreflightCheck, dict[str, Any]]:
    """Two real training steps of the rendered script on this CPU, on the shrunken model and the real data."""
    from tools.executor_local import run_local
    from tools.render import render_script

    cpu_spec, changed = smoke_spec(spec)
    model_folder, model_note = build_shrunken_model(cpu_spec)
    key = _smoke_key(cpu_spec, model_folder)
    cached = _smoke_cache_dir() / f"{key}.json"
    if cached.is_file():
        smoke = json.loads(cached.read_text(encoding="utf-8"))
        detail = f"{smoke['steps']} CPU steps passed earlier with the same script, data and model ({model_note})"
        return PreflightCheck(name="cpu_smoke_run", status="pass", detail=detail), {**smoke, "cached": True}
    eval_path = resolve_dataset_path(cpu_spec.eval_dataset_path) if cpu_spec.eval_dataset_path else None
    rendered = render_script(
        cpu_spec,
        workdir,
        model_path=str(model_folder),
        dataset_path=resolve_dataset_path(cpu_spec.dataset_path),
        eval_dataset_path=eval_path,
        device="cpu",
        extra={"max_steps": SMOKE_STEPS},
    )
    result = run_local(cpu_spec, workdir, rendered, timeout_s=SMOKE_TIMEOUT_S, memory_limit_mb=None)
    smoke = {
        "steps": result.steps_completed,
        "seconds": round(result.duration_s, 1),
        "loss": result.final_train_loss,
        "model": model_note,
        "changes": changed,
        "log": result.log_path,
    }
    if result.status != "succeeded" or result.steps_completed < 1:
        detail = (
            f"the script bound for {spec.target_gpu} failed its CPU smoke run ({result.failure_class}): "
            f"{result.error_message or 'no error text'}; log: {result.log_path}"
        )
        return PreflightCheck(name="cpu_smoke_run", status="fail", detail=detail), smoke
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(smoke), encoding="utf-8")
    adjusted = f"; for the CPU: {', '.join(changed)}" if changed else ""
    detail = (
        f"{result.steps_completed} training steps on this CPU in {result.duration_s:.0f} s, loss "
        f"{result.final_train_loss:.3f} ({model_note}{adjusted})"
    )
    return PreflightCheck(name="cpu_smoke_run", status="pass", detail=detail), smoke


# -- all of it ----------------------------------------------------------------------------------


def run_preflight(spec: TrainingSpec, workdir: Path, *, device: str) -> PreflightReport:
    """Every check for one spec; the smoke run only for a GPU-bound run (a CPU run is itself free)."""
    from tools.local_models import resolve_model
    from tools.render import render_script

    workdir = Path(workdir)
    try:
        model_path = resolve_model(spec.model_name).path  # builds a bundled model, so its tokenizer is there
    except AegisError as exc:
        return PreflightReport(
            spec_hash=spec.spec_hash(),
            passed=False,
            checks=[PreflightCheck(name="model", status="fail", detail=str(exc))],
        )
    tokenizer = _load_tokenizer(spec.model_name)
    checks, rows, truncated = check_data(spec, tokenizer)
    share = truncated / rows if rows else 0.0
    if rows:
        checks.append(
            PreflightCheck(
                name="truncation",
                status="warn" if share > TRUNCATION_WARN_SHARE else "pass",
                detail=f"{truncated} of {rows} training rows ({share:.0%}) are cut at seq_len {spec.seq_len}"
                + (
                    "; raise seq_len or expect the model to learn shorter replies"
                    if share > TRUNCATION_WARN_SHARE
                    else ""
                ),
            )
        )
    data_ok = not any(c.status == "fail" for c in checks)
    smoke = None
    if data_ok:
        try:
            eval_path = resolve_dataset_path(spec.eval_dataset_path) if spec.eval_dataset_path else None
            rendered = render_script(
                spec,
                workdir / "script",
                model_path=model_path,
                dataset_path=resolve_dataset_path(spec.dataset_path),
                eval_dataset_path=eval_path,
                device=device,
            )
            checks.append(check_script(rendered.config_path))
        except AegisError as exc:
            checks.append(PreflightCheck(name="script", status="fail", detail=str(exc)))
    if data_ok and not any(c.status == "fail" for c in checks) and spec.target_gpu != "cpu":
        check, smoke = smoke_run(spec, workdir / "smoke")
        checks.append(check)
    return PreflightReport(
        spec_hash=spec.spec_hash(),
        passed=not any(c.status == "fail" for c in checks),
        checks=checks,
        rows=rows,
        truncated_rows=truncated,
        truncated_share=share,
        tokenizer=tokenizer_name(tokenizer),
        smoke=smoke,
    )
