"""Talk to a trained model: load a run's fine-tuned model (adapter on its base, or a full model) and answer a chat.

The prompt is built exactly as training built it (``tools.recipe.formatting.prompt_text``: the model's own chat
template), tokens stream as they are generated, and the base model's answer can be asked for beside the tuned
one (the adapter disabled, or the base loaded once more for a full fine-tune). Greedy by default, so the same
question gets the same answer. torch, transformers and peft are imported inside the functions that use them.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.core.errors import AegisError
from tools.evals.examples import encode_text
from tools.evals.models import ModelPair, load_pair
from tools.inputs.local_models import resolve_model
from tools.recipe.formatting import prompt_text
from tools.use.runs import RunRecord

TokenFn = Callable[[str], None]
MAX_NEW_TOKENS = 200


class GenerationSettings(BaseModel):
    """How an answer is generated: greedy unless a temperature is given."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(default=MAX_NEW_TOKENS, ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0.0, le=5.0, description="0: greedy, the same answer each time.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int = Field(default=0, ge=0)


@dataclass
class TunedModel(ModelPair):
    """A run's fine-tuned model, ready to answer; ``base()`` gives the model it was tuned from."""

    run_id: str = ""

    @property
    def model(self) -> Any:
        return self.trained


def load_tuned(run: RunRecord, *, with_base: bool = False) -> TunedModel:
    """Load the model a run trained, on this machine's CPU (or its GPU when there is one)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the person asked for an answer, not for loading bars
    spec = run.require_spec()
    with warnings.catch_warnings():  # peft asks transformers a deprecated question; nothing for the person
        warnings.simplefilter("ignore", FutureWarning)
        pair = load_pair(
            run.final_dir(),
            resolve_model(spec.model_name).path,
            trust_remote_code=spec.trust_remote_code,
            with_base=with_base,
        )
    return TunedModel(pair.tokenizer, pair.trained, pair.base_model, pair.device, run.run_id)


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The conversation as token ids, ending where the assistant's reply begins: as training formatted it."""
    if not messages or messages[-1].get("role") != "user":
        raise AegisError("a conversation to answer ends with the person's message")
    return encode_text(tokenizer, prompt_text(tokenizer, messages))


def generate_reply(
    model: Any,
    tokenizer: Any,
    messages: list[dict[str, str]],
    settings: GenerationSettings | None = None,
    on_token: TokenFn | None = None,
    device: str = "cpu",
) -> str:
    """The model's reply to the conversation, streamed piece by piece to ``on_token`` as it is generated."""
    import torch
    from transformers import GenerationConfig, TextIteratorStreamer

    s = settings or GenerationSettings()
    ids = chat_prompt_ids(tokenizer, messages)
    eos = tokenizer.eos_token_id
    config = GenerationConfig(
        max_new_tokens=s.max_new_tokens,
        do_sample=s.temperature > 0,
        temperature=s.temperature if s.temperature > 0 else None,
        top_p=s.top_p if s.temperature > 0 else None,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
    )
    input_ids = torch.tensor([ids], device=device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            torch.manual_seed(s.seed)
            with torch.inference_mode():
                model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    generation_config=config,
                    streamer=streamer,
                )
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)
            streamer.end()

    worker = threading.Thread(target=work, name="aegis-generate", daemon=True)
    worker.start()
    pieces = []
    for piece in streamer:
        pieces.append(piece)
        if on_token is not None and piece:
            on_token(piece)
    worker.join()
    if failure:
        raise AegisError(f"generation failed: {type(failure[0]).__name__}: {failure[0]}")
    return "".join(pieces).strip()


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str
    tuned: str
    base: str | None = None


def answer(
    tuned: TunedModel,
    messages: list[dict[str, str]],
    settings: GenerationSettings | None = None,
    *,
    on_token: TokenFn | None = None,
    with_base: bool = False,
    on_base_token: TokenFn | None = None,
) -> Answer:
    """The tuned model's reply (streamed), and the base model's reply to the same conversation when asked."""
    reply = generate_reply(tuned.model, tuned.tokenizer, messages, settings, on_token, tuned.device)
    base = None
    if with_base:
        if tuned.base_model is None and not hasattr(tuned.model, "disable_adapter"):
            raise AegisError("the base model is not loaded: load the run with with_base=True")
        with tuned.base() as base_model:
            base = generate_reply(base_model, tuned.tokenizer, messages, settings, on_base_token, tuned.device)
    return Answer(prompt=messages[-1]["content"], tuned=reply, base=base)
