"""config.json, parsed once into typed values, with every problem listed before the run starts.

The host writes config.json from a validated TrainingSpec; this reader checks it again because the
script must stand alone (a hand-edited config, a copy run elsewhere) and because pre-flight imports
this very function to ask "will the script accept its config?" without running the script.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from tools.recipe.exits import EXIT_CONFIG, RecipeFailure
from tools.recipe.formatting import FORMATS
from tools.recipe.precision import PRECISIONS

METHODS = ("full_finetune", "lora", "qlora")
DEVICES = ("cpu", "cuda")
LR_SCHEDULERS = ("linear", "cosine", "constant")
# fsdp: each GPU holds a shard of the weights, gradients and optimizer states (torch FSDP, full shard).
SHARDINGS = ("none", "fsdp")
# The 8-bit AdamW of bitsandbytes (block-wise quantized moments), and its paged variant (states spill to host).
OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit")
REQUIRED_KEYS = ("spec", "model_path", "dataset_path", "output_dir", "metrics_path", "device", "precision")


@dataclass(frozen=True)
class RecipeSpec:
    """The spec fields the program reads; the host's TrainingSpec has more (target GPU, model name) to price a run."""

    method: str
    micro_batch_size: int
    gradient_accumulation_steps: int
    seq_len: int
    num_epochs: int
    learning_rate: float
    seed: int = 42
    eval_split: float = 0.1
    dataset_format: str = "auto"
    packing: bool = True
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = None
    lr_scheduler: str = "linear"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    sharding: str = "none"
    optimizer: str = "adamw"


@dataclass(frozen=True)
class RecipeConfig:
    """Everything one run needs: the spec, where things are, and the host's precision and run options."""

    spec: RecipeSpec
    model_path: str
    dataset_path: str
    output_dir: Path
    metrics_path: Path
    device: str
    precision: str
    eval_dataset_path: str | None = None
    max_steps: int | None = None
    checkpoint_every: int | None = None
    resume_from: str | None = None


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _non_negative_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _positive_finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _number_in(low: float, high: float) -> Callable[[Any], bool]:
    """A finite number in [low, high)."""
    return lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and low <= v < high


def _module_names(value: Any) -> bool:
    return value is None or (isinstance(value, list) and bool(value) and all(isinstance(n, str) and n for n in value))


# What each spec field must hold, worded for the problem list ("spec.<field> must be ...").
_SPEC_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "method": (lambda v: v in METHODS, f"one of {METHODS}"),
    "micro_batch_size": (_positive_int, "a positive integer"),
    "gradient_accumulation_steps": (_positive_int, "a positive integer"),
    "seq_len": (_positive_int, "a positive integer"),
    "num_epochs": (_positive_int, "a positive integer"),
    "learning_rate": (_positive_finite, "a positive finite number"),
    "seed": (_non_negative_int, "a non-negative integer"),
    "eval_split": (_number_in(0.0, 1.0), "a number from 0 to below 1"),
    "dataset_format": (lambda v: v == "auto" or v in FORMATS, f"'auto' or one of {FORMATS}"),
    "packing": (lambda v: isinstance(v, bool), "true or false"),
    "gradient_checkpointing": (lambda v: isinstance(v, bool), "true or false"),
    "trust_remote_code": (lambda v: isinstance(v, bool), "true or false"),
    "lora_r": (_positive_int, "a positive integer"),
    "lora_alpha": (_positive_int, "a positive integer"),
    "lora_dropout": (_number_in(0.0, 1.0), "a number from 0 to below 1"),
    "lora_target_modules": (_module_names, "null or a non-empty list of module names"),
    "lr_scheduler": (lambda v: v in LR_SCHEDULERS, f"one of {LR_SCHEDULERS}"),
    "warmup_steps": (_non_negative_int, "a non-negative integer"),
    "weight_decay": (_number_in(0.0, math.inf), "a non-negative finite number"),
    "sharding": (lambda v: v in SHARDINGS, f"one of {SHARDINGS}"),
    "optimizer": (lambda v: v in OPTIMIZERS, f"one of {OPTIMIZERS}"),
}


def _parse_spec(raw: Any, problems: list[str]) -> dict[str, Any]:
    """The spec's values (a field left out takes its default), each checked against its rule."""
    spec = raw if isinstance(raw, dict) else {}
    values: dict[str, Any] = {}
    for field in fields(RecipeSpec):
        value = spec.get(field.name, None if field.default is MISSING else field.default)
        check, wanted = _SPEC_RULES[field.name]
        if not check(value):
            problems.append(f"spec.{field.name} must be {wanted}")
        values[field.name] = value
    return values


def _top_level_problems(cfg: dict[str, Any]) -> list[str]:
    problems = [f"'{key}' is missing" for key in REQUIRED_KEYS if key not in cfg]
    for key in ("model_path", "dataset_path", "output_dir", "metrics_path"):
        if key in cfg and (not isinstance(cfg[key], str) or not cfg[key]):
            problems.append(f"{key} must be a non-empty string")
    if cfg.get("precision") not in PRECISIONS:
        problems.append(f"precision must be one of {PRECISIONS}")
    if cfg.get("device") not in DEVICES:
        problems.append("device must be 'cpu' or 'cuda'")
    for key in ("max_steps", "checkpoint_every"):
        value = cfg.get(key)
        if value is not None and not _positive_int(value):
            problems.append(f"{key} must be a positive integer or null")
    if "spec" in cfg and not isinstance(cfg["spec"], dict):
        problems.append("spec must be a JSON object")
    if cfg.get("eval_dataset_path") is not None and not isinstance(cfg["eval_dataset_path"], str):
        problems.append("eval_dataset_path must be a string or null")
    for key in ("dataset_path", "eval_dataset_path"):
        if cfg.get(key) and isinstance(cfg[key], str) and not Path(cfg[key]).is_file():
            problems.append(f"{key} '{cfg[key]}' does not exist")
    resume = cfg.get("resume_from")
    if resume and (not isinstance(resume, str) or not (Path(resume) / "state.json").is_file()):
        problems.append(f"resume_from '{resume}' is not a checkpoint folder (no state.json)")
    return problems


def parse_config(cfg: Any) -> RecipeConfig:
    """Typed values of a config mapping; one RecipeFailure listing every problem (a person wants the whole list)."""
    if not isinstance(cfg, dict):
        raise RecipeFailure(
            EXIT_CONFIG, "config", f"invalid config: it must be a JSON object, not {type(cfg).__name__}"
        )
    problems = _top_level_problems(cfg)
    spec = _parse_spec(cfg.get("spec"), problems)
    if problems:
        raise RecipeFailure(EXIT_CONFIG, "config", "invalid config: " + "; ".join(problems))
    return RecipeConfig(
        spec=RecipeSpec(**spec),
        model_path=cfg["model_path"],
        dataset_path=cfg["dataset_path"],
        output_dir=Path(cfg["output_dir"]),
        metrics_path=Path(cfg["metrics_path"]),
        device=cfg["device"],
        precision=cfg["precision"],
        eval_dataset_path=cfg.get("eval_dataset_path") or None,
        max_steps=cfg.get("max_steps"),
        checkpoint_every=cfg.get("checkpoint_every"),
        resume_from=cfg.get("resume_from") or None,
    )


def load_config(path: Path) -> RecipeConfig:
    """Read config.json and parse it; an unreadable file is a config failure like any other."""
    try:
        cfg = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecipeFailure(EXIT_CONFIG, "config", f"cannot read config {path}: {exc}") from None
    return parse_config(cfg)
