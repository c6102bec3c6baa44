"""The script and its CPU smoke run: the pre-flight checks that render and run code.

The rendered script must be valid Python that accepts its own config, and, for a run bound for a GPU,
the very same script trains two steps on this CPU on a shrunken model of the same architecture (a few
narrow layers, random weights) and the real data. Results are cached by everything they depend on.
``run_preflight`` puts these together with the data checks of ``tools.plan.preflight``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from tools.core.errors import AegisError
from tools.core.paths import aegis_home, model_cache_dir
from tools.core.runlog import write_cache_entry
from tools.core.settings import settings
from tools.core.spec import TrainingSpec
from tools.core.status import AttemptStatus, CheckStatus
from tools.core.stop import StopCheck
from tools.inputs.local_models import resolve_model
from tools.inputs.model_config import load_model_config
from tools.inputs.prepared import PreparedData, PreparedSpec
from tools.inputs.tokenizer import load_tokenizer
from tools.plan.preflight import PreflightCheck, PreflightReport, data_checks
from tools.recipe.config import load_config
from tools.recipe.exits import RecipeFailure
from tools.run.local import run_local
from tools.run.render import render_script, render_source

SMOKE_STEPS = 2
SMOKE_TIMEOUT_S = 900.0
SMOKE_MAX_MICRO_BATCH = 2  # the smoke run checks the code path, not memory; logits of a big vocab add up
# A few layers of the same architecture at a width a CPU trains in seconds.
SHRUNK_LAYERS = 2
SHRUNK_WIDTH = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "head_dim": 16}


# -- script --------------------------------------------------------------------------------------


def check_script(config_path: Path) -> PreflightCheck:
    """The rendered script compiles, and the recipe's own config reader (inlined in it) accepts the config."""
    try:
        compile(render_source(), "train.py", "exec")
    except SyntaxError as exc:
        return PreflightCheck(name="script", status="fail", detail=f"train.py is not valid Python: {exc}")
    try:
        load_config(config_path)
    except RecipeFailure as exc:
        return PreflightCheck(name="script", status="fail", detail=f"train.py refuses its config: {exc}")
    return PreflightCheck(name="script", status="pass", detail="train.py compiles and accepts its config")


# -- the CPU smoke run --------------------------------------------------------------------------


def _fallback_tokenizer() -> tuple[Any, str]:
    from transformers import AutoTokenizer

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
    return _per_layer_lists_cut(shrunk, int(getattr(config, "num_hidden_layers", 0) or 0))


def _per_layer_lists_cut(shrunk: Any, layers: int) -> Any:
    """Lists with one entry per layer (qwen2's layer_types, ...) cut to the shrunken depth, and the result checked.

    A config whose per-layer list no longer matches its depth is refused by transformers when the model is built.
    """
    from transformers import AutoConfig

    values = shrunk.to_dict()
    for key, value in values.items():
        if layers > SHRUNK_LAYERS and isinstance(value, list) and len(value) == layers:
            setattr(shrunk, key, value[:SHRUNK_LAYERS])
    values = shrunk.to_dict()
    model_type = values.pop("model_type")
    try:
        AutoConfig.for_model(model_type, **values)
    except Exception as exc:  # the config classes validate themselves with many error types
        raise AegisError(f"cannot shrink the '{model_type}' architecture for the CPU smoke run: {exc}") from None
    return shrunk


def build_shrunken_model(spec: TrainingSpec) -> tuple[Path, str]:
    """A random-weight model of the spec's architecture, saved once per config and tokenizer; returns path and note."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    config = load_model_config(spec.model_name, trust_remote_code=spec.trust_remote_code)
    tokenizer = load_tokenizer(spec.model_name)
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
        model = AutoModelForCausalLM.from_config(shrunk)  # the built-in architecture: the config was read as data
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


def _smoke_cache_dir() -> Path:
    return (settings().preflight_cache or aegis_home() / "preflight").expanduser()


def _smoke_key(spec: TrainingSpec, data: PreparedData, model_folder: Path) -> str:
    """Everything the smoke run's outcome depends on: script, spec, data contents, model, library versions."""
    import peft
    import torch
    import transformers

    material = {
        "script": hashlib.sha256(render_source().encode()).hexdigest(),
        "spec": spec.model_dump(mode="json", exclude={"target_gpu"}),
        "data": data.digest,
        "model": model_folder.name,
        "versions": [torch.__version__, transformers.__version__, peft.__version__],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:24]


def _cached_smoke(path: Path) -> dict[str, Any] | None:
    """A smoke run that passed earlier; None when there is none, or the entry is torn or foreign (run again)."""
    try:
        smoke = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return smoke if isinstance(smoke, dict) and isinstance(smoke.get("steps"), int) else None


def smoke_run(
    spec: TrainingSpec, data: PreparedData, workdir: Path, should_stop: StopCheck | None = None
) -> tuple[PreflightCheck, dict[str, Any]]:
    """Two real training steps of the rendered script on this CPU, on the shrunken model and the real data."""
    cpu_spec, changed = smoke_spec(spec)
    model_folder, model_note = build_shrunken_model(cpu_spec)
    key = _smoke_key(cpu_spec, data, model_folder)
    cached = _smoke_cache_dir() / f"{key}.json"
    smoke = _cached_smoke(cached)
    if smoke is not None:
        detail = f"{smoke['steps']} CPU steps passed earlier with the same script, data and model ({model_note})"
        return PreflightCheck(name="cpu_smoke_run", status="pass", detail=detail), {**smoke, "cached": True}
    rendered = render_script(
        cpu_spec,
        workdir,
        model_path=str(model_folder),
        dataset_path=Path(data.train_copy),
        eval_dataset_path=Path(data.eval_copy) if data.eval_copy else None,
        device="cpu",
        extra={"max_steps": SMOKE_STEPS},
    )
    result = run_local(
        cpu_spec, workdir, rendered, timeout_s=SMOKE_TIMEOUT_S, memory_limit_mb=None, should_stop=should_stop
    )
    smoke = {
        "steps": result.steps_completed,
        "seconds": round(result.duration_s, 1),
        "loss": result.final_train_loss,
        "model": model_note,
        "changes": changed,
        "log": result.log_path,
    }
    if result.status == AttemptStatus.INTERRUPTED:
        detail = "the CPU smoke run was stopped: a stop was requested"
        return PreflightCheck(name="cpu_smoke_run", status="fail", detail=detail), smoke
    if result.status != AttemptStatus.SUCCEEDED or result.steps_completed < 1:
        detail = (
            f"the script bound for {spec.target_gpu} failed its CPU smoke run ({result.failure_class}): "
            f"{result.error_message or 'no error text'}; log: {result.log_path}"
        )
        return PreflightCheck(name="cpu_smoke_run", status="fail", detail=detail), smoke
    write_cache_entry(cached, json.dumps(smoke))
    adjusted = f"; for the CPU: {', '.join(changed)}" if changed else ""
    detail = (
        f"{result.steps_completed} training steps on this CPU in {result.duration_s:.0f} s, loss "
        f"{result.final_train_loss:.3f} ({model_note}{adjusted})"
    )
    return PreflightCheck(name="cpu_smoke_run", status="pass", detail=detail), smoke


# -- all of it ----------------------------------------------------------------------------------


def run_preflight(
    prepared: PreparedSpec, workdir: Path, *, device: str, should_stop: StopCheck | None = None
) -> PreflightReport:
    """Every check for one prepared spec; the smoke run only for a GPU-bound run (a CPU run is itself free).

    The data checks judge what was measured when the spec was prepared: nothing is read again here.
    """
    spec, data = prepared.spec, prepared.data
    workdir = Path(workdir)
    try:
        model_path = resolve_model(spec.model_name).path  # builds a bundled model, so its tokenizer is there
    except AegisError as exc:
        return PreflightReport(
            spec_hash=prepared.spec_hash,
            passed=False,
            checks=[PreflightCheck(name="model", status="fail", detail=str(exc))],
        )
    checks = data_checks(data, spec.seq_len)
    smoke = None
    if not any(c.status == CheckStatus.FAIL for c in checks):
        try:
            rendered = render_script(
                spec,
                workdir / "script",
                model_path=model_path,
                dataset_path=Path(data.train_copy),
                eval_dataset_path=Path(data.eval_copy) if data.eval_copy else None,
                device=device,
            )
            checks.append(check_script(rendered.config_path))
        except AegisError as exc:
            checks.append(PreflightCheck(name="script", status="fail", detail=str(exc)))
    if not any(c.status == CheckStatus.FAIL for c in checks) and spec.target_gpu != "cpu":
        check, smoke = smoke_run(spec, data, workdir / "smoke", should_stop)
        checks.append(check)
    rows = data.train_rows
    return PreflightReport(
        spec_hash=prepared.spec_hash,
        passed=not any(c.status == CheckStatus.FAIL for c in checks),
        checks=checks,
        rows=rows.rows,
        truncated_rows=rows.truncated_rows,
        truncated_share=rows.truncated_rows / rows.rows if rows.rows else 0.0,
        tokenizer=data.stats.tokenizer,
        smoke=smoke,
    )
