"""Default LoRA targets: one rule for the estimator (meta-device layers) and the script (the loaded model)."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from tools.inputs.local_models import resolve_model
from tools.inputs.model_config import default_lora_targets as host_default_lora_targets
from tools.inputs.model_config import load_model_config
from tools.recipe.lora import default_lora_targets, linear_layer_names


def test_families_by_module_names() -> None:
    llama = [f"model.layers.0.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "o_proj")]
    assert default_lora_targets(llama + ["model.layers.0.mlp.up_proj"]) == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert default_lora_targets(["h.0.attn.c_attn", "h.0.attn.c_proj", "h.0.mlp.c_proj"]) == ["c_attn", "c_proj"]
    # phi-3 shares o_proj with llama's family, but its whole family is qkv_proj + o_proj
    assert default_lora_targets(["layers.0.self_attn.qkv_proj", "layers.0.self_attn.o_proj"]) == ["qkv_proj", "o_proj"]
    assert default_lora_targets(["layers.0.mixer.in_proj", "layers.0.mixer.out_proj_x"]) == []


def test_host_and_script_pick_the_same_targets() -> None:
    for name in ("gpt2", "local:tiny-llama"):
        config = load_model_config(name)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        assert host_default_lora_targets(config) == default_lora_targets(linear_layer_names(model))


def test_the_built_tiny_model_matches_its_config() -> None:
    path = resolve_model("local:tiny-llama").path
    model = AutoModelForCausalLM.from_pretrained(path)
    assert default_lora_targets(linear_layer_names(model)) == host_default_lora_targets(
        AutoConfig.from_pretrained(path)
    )
