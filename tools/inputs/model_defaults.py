"""Recipe defaults for the bundled local models, applied only to fields a request leaves unsaid.

TrainingSpec's own defaults (learning_rate 5e-5, seq_len 512, attention-only LoRA) suit a
pretrained multi-billion-parameter model on a GPU. The bundled models train on a laptop CPU in
minutes, so they ship with settings measured to learn there (see data/specs/ and bench/).
"""

from __future__ import annotations

from typing import Any

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

RECIPES: dict[str, dict[str, Any]] = {
    # A 4M-parameter random-init Llama: only a high rate on every linear layer moves it within a minute.
    "local:tiny-llama": {
        "learning_rate": 1e-2,
        "warmup_steps": 5,
        "seq_len": 128,
        "lora_target_modules": ALL_LINEAR,
        "target_gpu": "cpu",
    },
    # SmolLM2-135M-Instruct: chats are under 160 tokens; 3e-4 teaches the house format in ~60 steps.
    "local:smollm2-135m-instruct": {
        "learning_rate": 3e-4,
        "warmup_steps": 5,
        "seq_len": 256,
        "target_gpu": "cpu",
    },
}


def recipe_defaults(model_name: str) -> dict[str, Any]:
    return dict(RECIPES.get(model_name, {}))
