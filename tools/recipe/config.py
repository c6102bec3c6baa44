"""config.json, parsed once into typed values, with every problem listed before the run starts.

The host writes config.json from a validated TrainingSpec; this reader checks it again because the
script must stand alone (a hand-edited config, a copy run elsewhere) and because pre-flight imports
this very function to ask "will the script accept its config?" without running the script.

The enums, defaults and bounds of the spec fields the script reads are written once, here: the host's
TrainingSpec (tools/core/spec.py) declares those fields from SPEC_FIELDS, so the two cannot disagree.
They live on this side because the script is self-contained and may import nothing from the host.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

from tools.recipe.exits import EXIT_CONFIG, RecipeFailure
from tools.recipe.precision import PRECISIONS

Method = Literal["full_finetune", "lora", "qlora"]
# auto: detected from the first records; the others are tools/recipe/formatting.py's FORMATS.
DatasetFormat = Literal["auto", "text", "prompt_completion", "instruction", "messages"]
LrScheduler = Literal["linear", "cosine", "constant"]
# fsdp: with several GPUs, each holds a shard of the weights, gradients and optimizer states (torch FSDP, full shard).
Sharding = Literal["none", "fsdp"]
# adamw: fp32 moments (8 bytes per trainable weight); the 8-bit ones (bitsandbytes, CUDA) keep 2, block-wise
# quantized; paged also moves them to host memory under pressure.
OptimizerName = Literal["adamw", "adamw_8bit", "paged_adamw_8bit"]
DEVICES = ("cpu", "cuda")
# A saved adapter (peft's save_pretrained): its config and one of its weight files, safetensors first.
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
ADAPTER_FILES_WORDS = "adapter_config.json and adapter_model.safetensors or adapter_model.bin"
REQUIRED_KEYS = ("spec", "model_path", "dataset_path", "output_dir", "metrics_path", "device", "precision")


@dataclass(frozen=True)
class FieldRule:
    """What one spec field may hold: its type, its default, its choices or bounds (pydantic's ge/gt/le/lt).

    A default of None means null is allowed. The host's pydantic Field takes these values as they are.
    """

    kind: type
    default: Any
    choices: tuple[str, ...] = ()
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    max_length: int | None = None

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.default is None
        if self.choices:
            return value in self.choices
        if self.kind is bool or isinstance(value, bool):
            return self.kind is bool and isinstance(value, bool)
        if self.kind is list:
            names = value if isinstance(value, list) else []
            fits = self.max_length is None or len(names) <= self.max_length
            return bool(names) and fits and all(isinstance(name, str) and name for name in names)
        if not isinstance(value, int if self.kind is int else int | float) or not math.isfinite(value):
            return False
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def wanted(self) -> str:
        """The rule in words, for the problem list: "spec.seq_len must be a positive integer from 16 to 131072"."""
        if self.choices:
            words = f"one of {self.choices}"
        elif self.kind is bool:
            words = "true or false"
        elif self.kind is list:
            words = f"a list of 1 to {self.max_length} names" if self.max_length else "a non-empty list of names"
        else:
            words = self._number_words()
        return f"null or {words}" if self.default is None else words

    def _number_words(self) -> str:
        noun, low, high = ("an integer" if self.kind is int else "a finite number"), "", ""
        if self.kind is int and self.ge is not None and self.ge >= 0:
            noun = "a positive integer" if self.ge >= 1 else "a non-negative integer"
            low = f" from {self.ge}" if self.ge > 1 else ""
        elif self.ge is not None:
            low = f" from {self.ge}"
        elif self.gt is not None:
            low = f" above {self.gt}"
        if self.le is not None:
            high = f" to {self.le}" if low else f" up to {self.le}"
        elif self.lt is not None:
            high = f" to below {self.lt}" if low else f" below {self.lt}"
        return noun + low + high


# The spec fields the script reads (the spec object, and max_steps at the top level), one rule each.
# Change a default or a bound here and the host's TrainingSpec changes with it.
SPEC_FIELDS: dict[str, FieldRule] = {
    "method": FieldRule(str, "lora", choices=get_args(Method)),
    "dataset_format": FieldRule(str, "auto", choices=get_args(DatasetFormat)),
    "num_epochs": FieldRule(int, 3, ge=1, le=100),
    "max_steps": FieldRule(int, None, ge=1, le=10**8),
    "micro_batch_size": FieldRule(int, 4, ge=1, le=1024),
    "gradient_accumulation_steps": FieldRule(int, 1, ge=1, le=1024),
    "learning_rate": FieldRule(float, 5e-5, gt=0),
    "lr_scheduler": FieldRule(str, "linear", choices=get_args(LrScheduler)),
    "warmup_steps": FieldRule(int, 0, ge=0, le=10**8),
    "weight_decay": FieldRule(float, 0.0, ge=0, le=1),
    "seq_len": FieldRule(int, 512, ge=16, le=131072),
    # LoRA rank: higher trains more weights (more accuracy, more memory); alpha scales the update (alpha / r).
    "lora_r": FieldRule(int, 16, ge=1, le=1024),
    "lora_alpha": FieldRule(int, 32, ge=1, le=4096),
    "lora_dropout": FieldRule(float, 0.05, ge=0, lt=1),
    "lora_target_modules": FieldRule(list, None, max_length=64),
    "eval_split": FieldRule(float, 0.1, ge=0, le=0.5),
    "seed": FieldRule(int, 42, ge=0, le=2**32 - 1),
    "gradient_checkpointing": FieldRule(bool, False),
    "packing": FieldRule(bool, True),
    "sharding": FieldRule(str, "none", choices=get_args(Sharding)),
    "optimizer": FieldRule(str, "adamw", choices=get_args(OptimizerName)),
    "trust_remote_code": FieldRule(bool, False),
}


@dataclass(frozen=True)
class RecipeSpec:
    """The spec fields the program reads; the host's TrainingSpec has more (target GPU, model name) to price a run."""

    method: Method
    micro_batch_size: int
    gradient_accumulation_steps: int
    seq_len: int
    num_epochs: int
    learning_rate: float
    seed: int
    eval_split: float
    dataset_format: DatasetFormat
    packing: bool
    gradient_checkpointing: bool
    trust_remote_code: bool
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    lora_target_modules: list[str] | None
    lr_scheduler: LrScheduler
    warmup_steps: int
    weight_decay: float
    sharding: Sharding
    optimizer: OptimizerName


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
    init_adapter: str | None = None  # warm start: a finished LoRA run's adapter folder, loaded into the new LoRA


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _parse_spec(raw: Any, problems: list[str]) -> dict[str, Any]:
    """The spec's values (a field left out takes its default), each checked against its rule."""
    spec = raw if isinstance(raw, dict) else {}
    values: dict[str, Any] = {}
    for field in fields(RecipeSpec):
        rule = SPEC_FIELDS[field.name]
        value = spec.get(field.name, rule.default)
        if not rule.accepts(value):
            problems.append(f"spec.{field.name} must be {rule.wanted()}")
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
    if not SPEC_FIELDS["max_steps"].accepts(cfg.get("max_steps")):
        problems.append(f"max_steps must be {SPEC_FIELDS['max_steps'].wanted()}")
    if cfg.get("checkpoint_every") is not None and not _positive_int(cfg["checkpoint_every"]):
        problems.append("checkpoint_every must be a positive integer or null")
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
    adapter = cfg.get("init_adapter")
    if adapter and (not isinstance(adapter, str) or adapter_weights(Path(adapter)) is None):
        problems.append(f"init_adapter '{adapter}' is not an adapter folder ({ADAPTER_FILES_WORDS})")
    return problems


def adapter_weights(folder: Path) -> Path | None:
    """The weights file of a saved LoRA adapter (peft's save_pretrained), or None if the folder holds no adapter."""
    if not (folder / "adapter_config.json").is_file():
        return None
    return next((folder / name for name in ADAPTER_WEIGHTS if (folder / name).is_file()), None)


def parse_config(cfg: Any) -> RecipeConfig:
    """Typed values of a config mapping; one RecipeFailure listing every problem (a person wants the whole list)."""
    if not isinstance(cfg, dict):
        raise RecipeFailure(
            EXIT_CONFIG, "config", f"invalid config: it must be a JSON object, not {type(cfg).__name__}"
        )
    problems = _top_level_problems(cfg)
    spec = _parse_spec(cfg.get("spec"), problems)
    if cfg.get("init_adapter") and spec["method"] not in ("lora", "qlora"):
        # A full fine-tune continues from the parent's final weights instead: the host points model_path at them.
        problems.append("init_adapter needs method lora or qlora")
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
        init_adapter=cfg.get("init_adapter") or None,
    )


def load_config(path: Path) -> RecipeConfig:
    """Read config.json and parse it; an unreadable file is a config failure like any other."""
    try:
        cfg = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecipeFailure(EXIT_CONFIG, "config", f"cannot read config {path}: {exc}") from None
    return parse_config(cfg)
