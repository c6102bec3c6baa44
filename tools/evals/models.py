"""The trained model and its base, side by side: loading them, held-out loss, greedy generation.

torch, transformers and peft (heavy) are imported inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.core.errors import AegisError
from tools.recipe.formatting import IGNORE_INDEX


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
    final_dir: Path,
    base_model_path: str,
    *,
    trust_remote_code: bool = False,
    with_base: bool = True,
) -> ModelPair:
    """Load the trained model (peft adapter or full model) and its base, in float32 for stable loss numbers.

    The tokenizer is the one the training script saved with the model, else the base model's.
    with_base False: after a full fine-tune, do not load the base beside it (an adapter always needs its base).
    Runs model code: call it only in a sandboxed worker (tools.evals.sandboxed).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not final_dir.is_dir():
        raise AegisError(f"no trained model at '{final_dir}': the training attempt did not save one")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok_source = str(final_dir) if (final_dir / "tokenizer_config.json").is_file() else base_model_path
    tokenizer = AutoTokenizer.from_pretrained(tok_source, trust_remote_code=trust_remote_code)

    def load(path: str) -> Any:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust_remote_code)
        return model.to(device).eval()

    if (final_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        trained = PeftModel.from_pretrained(load(base_model_path), str(final_dir)).to(device).eval()
        return ModelPair(tokenizer, trained, None, device)
    base = load(base_model_path) if with_base else None
    return ModelPair(tokenizer, load(str(final_dir)), base, device)


def heldout_loss(
    model: Any,
    tokenizer: Any,
    encoded: list[tuple[list[int], list[int]]],
    device: str,
    tick: Callable[[], None] | None = None,
) -> float | None:
    """Token-weighted mean cross-entropy over reply tokens only (prompt masked exactly as in training).

    tick: called once per row measured (the eval's progress).
    """
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
            if tick is not None:
                tick()
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
