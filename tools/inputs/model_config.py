"""A model's architecture without its weights: config lookup (offline first) and exact parameter counts.

The estimator needs parameter counts and layer shapes, never weights. Counts come from instantiating
the real transformers model class on torch's ``meta`` device, so they are exact for every architecture
transformers knows, and cost milliseconds. Published configs of popular models ship in
``tools/inputs/model_configs/`` so estimates work with no hub access.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tools.core.errors import ModelError, SpecError
from tools.core.isolation import CodeFile
from tools.inputs.local_models import local_model_config
from tools.recipe.lora import default_lora_targets as recipe_default_lora_targets

CONFIGS_DIR = Path(__file__).with_name("model_configs")


@dataclass(frozen=True)
class LinearShape:
    """One matmul layer of the model (nn.Linear or GPT-2's Conv1D), named as peft sees it."""

    name: str
    in_features: int
    out_features: int

    @property
    def params(self) -> int:
        return self.in_features * self.out_features


@dataclass(frozen=True)
class ModelStats:
    """What the estimator needs from a model: exact counts and shapes, read from a weightless instance."""

    model_type: str
    total_params: int
    linears: tuple[LinearShape, ...]
    num_layers: int
    hidden_size: int
    num_heads: int
    vocab_size: int
    max_positions: int | None
    # Weights inside the repeated decoder layers; the rest (embeddings, LM head, final norm) is outside them.
    layer_params: int

    @property
    def matmul_params(self) -> int:
        """Weights that take part in a matmul per token (embedding lookups cost no FLOPs; lm_head does)."""
        return sum(layer.params for layer in self.linears)

    @property
    def quantizable_params(self) -> int:
        """Weights bitsandbytes stores in 4 bits: every linear layer except lm_head (embeddings, norms stay 16-bit)."""
        return sum(layer.params for layer in self.linears if not _matches(layer.name, "lm_head"))


@cache
def _index() -> dict[str, str]:
    return json.loads((CONFIGS_DIR / "index.json").read_text(encoding="utf-8"))


def shipped_models() -> list[str]:
    """Model names (and aliases) whose config ships with Aegis-ML, usable offline."""
    return list(_index())


def _shipped_file(model_name: str) -> str | None:
    """The shipped config file for a name or alias, matched case-insensitively."""
    wanted = model_name.strip().lower()
    return next((file for key, file in _index().items() if key.lower() == wanted), None)


def hub_id(model_name: str) -> str:
    """The hub id behind a shipped alias ('llama-2-7b' -> 'meta-llama/Llama-2-7b-hf'); other names unchanged."""
    file = _shipped_file(model_name)
    if file is None:
        return model_name.strip()
    return next(key for key, value in _index().items() if value == file)  # the index lists the hub id first


def remote_code_files(model_name: str) -> list[CodeFile]:
    """The Python files a local model folder ships (its own code), with their digests; none for other models."""
    folder = Path(model_name.strip()).expanduser()
    if not (folder / "config.json").is_file():
        return []
    return [
        CodeFile(name=str(path.relative_to(folder)), sha256=hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(folder.rglob("*.py"))
        if path.is_file()
    ]


def _folder_config(path: Path, trust_remote_code: bool) -> Any:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {_first_line(exc)}") from None
    if not isinstance(values, dict):
        raise ModelError(f"cannot read {path}: it is not a JSON object")
    if values.pop("auto_map", None) is not None and not trust_remote_code:
        raise ModelError(
            f"the model in {path.parent} ships its own code (auto_map in config.json): set trust_remote_code: true "
            "to run it, isolated, after you have read it"
        )
    return config_from_dict(values, source=str(path))


def config_from_dict(values: dict[str, Any], source: str) -> Any:
    from transformers import AutoConfig

    values = dict(values)
    model_type = values.pop("model_type", None)
    if not model_type:
        raise ModelError(f"config from {source} has no 'model_type'; it is not a transformers config")
    try:
        return AutoConfig.for_model(model_type, **values)
    except (ValueError, KeyError) as exc:
        raise ModelError(f"config from {source} cannot be read: {exc}") from None


def load_model_config(model_name: str, *, trust_remote_code: bool = False) -> Any:
    """A transformers PretrainedConfig: local models, a local folder, shipped configs, then the hub (cache first).

    A model's own code never runs here: a folder whose config maps to its code (``auto_map``) is read as data,
    as the built-in architecture its ``model_type`` names, and only when the spec says it trusts that code (which
    then runs in the sandbox only)."""
    name = model_name.strip()
    if name.lower().startswith("local:"):
        return config_from_dict(local_model_config(name), source=name)
    from transformers import AutoConfig

    folder = Path(name).expanduser()
    if (folder / "config.json").is_file():
        return _folder_config(folder / "config.json", trust_remote_code)
    file = _shipped_file(name)
    if file is not None:
        values = json.loads((CONFIGS_DIR / file).read_text(encoding="utf-8"))
        return config_from_dict(values, source=f"shipped config {file}")
    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=False)  # a Hub model's own code never runs here
    except Exception as exc:  # any hub/cache failure means the same thing to the person
        known = ", ".join(sorted({*_index(), "local:tiny-llama", "local:smollm2-135m-instruct"}, key=str.lower))
        raise ModelError(
            f"cannot read the config of model '{name}' ({_first_line(exc)}). Offline, use one of: {known}; "
            "or a local folder with a config.json"
        ) from None


def max_positions(config: Any) -> int | None:
    """How many positions the model can attend to (max_position_embeddings, gpt2's n_positions); None if unsaid."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    value = getattr(text, "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


def check_seq_len(model_name: str, seq_len: int, config: Any) -> None:
    """A seq_len beyond the model's positions is a spec error naming both numbers (it would crash the run)."""
    limit = max_positions(config)
    if limit is not None and seq_len > limit:
        raise SpecError(
            [
                f"spec field 'seq_len' is {seq_len}, but {model_name} has {limit:,} positions: a row longer than that "
                f"cannot be trained on. Use seq_len {limit} or less"
            ]
        )


def known_config(model_name: str, *, trust_remote_code: bool = False) -> Any | None:
    """The config when it is on this machine (a local model, a folder, a shipped config); None rather than ask the hub."""
    name = model_name.strip()
    if name.lower().startswith("local:") or (Path(name).expanduser() / "config.json").is_file() or _shipped_file(name):
        return load_model_config(name, trust_remote_code=trust_remote_code)
    return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _config_key(config: Any) -> str:
    return json.dumps(config.to_dict(), sort_keys=True, default=str)


_STATS_CACHE: dict[tuple[str, bool], ModelStats] = {}


def model_stats(config: Any) -> ModelStats:
    """Counts and shapes of the model a config describes, cached per config contents."""
    key = _config_key(config)
    if key not in _STATS_CACHE:
        _STATS_CACHE[key] = _build_stats(config)
    return _STATS_CACHE[key]


def _build_stats(config: Any) -> ModelStats:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)  # a built-in architecture: configs are read as data
    except (ValueError, KeyError, ImportError) as exc:
        raise ModelError(f"cannot build the '{config.model_type}' architecture for counting: {exc}") from None
    linears = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            linears.append(LinearShape(name, module.in_features, module.out_features))
        elif isinstance(module, Conv1D):  # GPT-2 stores its weight as (in, out)
            linears.append(LinearShape(name, module.weight.shape[0], module.nf))
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return ModelStats(
        model_type=str(config.model_type),
        total_params=sum(p.numel() for p in model.parameters()),
        linears=tuple(linears),
        num_layers=int(text.num_hidden_layers),
        hidden_size=int(text.hidden_size),
        num_heads=int(text.num_attention_heads),
        vocab_size=int(text.vocab_size),
        max_positions=max_positions(config),
        layer_params=_decoder_layer_params(model, int(text.num_hidden_layers)),
    )


def _decoder_layer_params(model: Any, num_layers: int) -> int:
    """Weights of the repeated decoder layers: the largest module list with one entry per layer."""
    import torch

    stacks = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == num_layers]
    return max((sum(p.numel() for p in stack.parameters()) for stack in stacks), default=0)


def count_parameters(config: Any) -> int:
    """Exact parameter count (tied weights counted once), from a weightless meta-device instance."""
    return model_stats(config).total_params


def _matches(module_name: str, target: str) -> bool:
    """peft's rule: a target names a module by its full name or its last dotted components."""
    return module_name == target or module_name.endswith("." + target)


def default_lora_targets(config: Any) -> list[str]:
    """The attention projections LoRA adapts when the spec names none: the recipe's rule, on the model's layers."""
    names = [layer.name for layer in model_stats(config).linears]
    targets = recipe_default_lora_targets(names)
    if not targets:
        model_type = str(getattr(config, "model_type", ""))
        raise ModelError(f"no default LoRA target modules for architecture '{model_type}'; set lora_target_modules")
    return targets


def lora_trainable_params(config: Any, target_modules: list[str], r: int) -> int:
    """Adapter parameters peft adds: r * (in + out) for every matmul layer a target names."""
    stats = model_stats(config)
    hit = [layer for layer in stats.linears if any(_matches(layer.name, t) for t in target_modules)]
    if not hit:
        found = sorted({layer.name.rsplit(".", 1)[-1] for layer in stats.linears})
        raise ModelError(
            f"LoRA target modules {target_modules} match no layer of '{stats.model_type}'; its layers are {found}"
        )
    return sum(r * (layer.in_features + layer.out_features) for layer in hit)
