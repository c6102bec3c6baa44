"""Which layers LoRA adapts when the spec names none, and the adapter itself.

The estimator counts trainable parameters with the same default_lora_targets the script applies,
so the price and the run agree on what trains.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tools.recipe.exits import EXIT_CONFIG, RecipeFailure

# Attention projections by family, first match wins: llama-like (llama, mistral, qwen2, ...), falcon/bloom/gpt-neox,
# gpt2, mpt, phi-3.
LORA_TARGET_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("q_proj", "k_proj", "v_proj", "o_proj"),
    ("query_key_value", "dense"),
    ("c_attn", "c_proj"),
    ("Wqkv", "out_proj"),
    ("qkv_proj", "o_proj"),
)


def default_lora_targets(module_names: Iterable[str]) -> list[str]:
    """The attention projections among a model's module names (matched by their last part); [] if none.

    A family the model has whole wins over one it shares a name with (phi-3's o_proj is not llama's q/k/v/o).
    """
    names = {name.rsplit(".", 1)[-1] for name in module_names}
    for family in LORA_TARGET_FAMILIES:
        if all(target in names for target in family):
            return list(family)
    for family in LORA_TARGET_FAMILIES:
        found = [target for target in family if target in names]
        if found:
            return found
    return []


def linear_layer_names(model: Any) -> list[str]:
    """The matmul layers (nn.Linear, 4-bit ones included, and GPT-2's Conv1D): what the estimator counts."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear | Conv1D)]


def apply_lora(model: Any, targets: list[str], *, r: int, alpha: int, dropout: float) -> Any:
    """The model wrapped by peft with adapters on targets; a target that matches nothing is a config failure."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        raise RecipeFailure(EXIT_CONFIG, "config", f"cannot apply LoRA to {targets}: {exc}") from None
