"""The model worker: ``python -m tools.use.model_worker chat|merge REQUEST_JSON``, run in the sandbox.

chat (tools.use.generate): load a run's model, say ready, then answer one TurnRequest line of stdin at a time,
streaming the tokens as WorkerLine JSON lines on stdout, until stdin closes. The prompt is built exactly as
training built it (the model's own chat template). merge (tools.use.export): fold an adapter into its base and
save plain safetensors weights with the tokenizer. The model's own code runs only here. torch, transformers and
peft are imported inside the functions that use them.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from tools.core.errors import AegisError
from tools.evals.examples import encode_text
from tools.evals.models import ModelPair, load_pair
from tools.evals.sandboxed import failure_reason, say_failure
from tools.recipe.formatting import prompt_text
from tools.use.protocol import (
    LOG_FILE,
    Answer,
    GenerationSettings,
    LoadRequest,
    MergeRequest,
    TokenFn,
    TurnRequest,
    WorkerLine,
)


def load_model(request: LoadRequest) -> ModelPair:
    """The run's model on this machine's CPU (or its GPU when there is one), and its base when asked."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the person asked for an answer, not for loading bars
    with warnings.catch_warnings():  # peft asks transformers a deprecated question; nothing for the person
        warnings.simplefilter("ignore", FutureWarning)
        return load_pair(
            Path(request.final_dir),
            request.base_path,
            trust_remote_code=request.trust_remote_code,
            with_base=request.with_base,
        )


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


def answer_turn(pair: ModelPair, turn: TurnRequest, on_token: Callable[[str, str], None]) -> Answer:
    """The tuned model's reply, and the base model's when asked; each token goes to ``on_token(model, text)``."""
    s = turn.settings
    tuned = generate_reply(pair.trained, pair.tokenizer, turn.messages, s, lambda t: on_token("tuned", t), pair.device)
    base = None
    if turn.with_base:
        if pair.base_model is None and not hasattr(pair.trained, "disable_adapter"):
            raise AegisError("the base model is not loaded: start the worker with with_base")
        with pair.base() as base_model:
            base = generate_reply(
                base_model, pair.tokenizer, turn.messages, s, lambda t: on_token("base", t), pair.device
            )
    return Answer(prompt=turn.messages[-1]["content"], tuned=tuned, base=base)


def merge_adapter(request: MergeRequest) -> None:
    """Fold the LoRA adapter into the base weights (fp32) and save plain safetensors weights with the tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trust = request.trust_remote_code
    adapter_dir = Path(request.adapter_dir)
    base = AutoModelForCausalLM.from_pretrained(request.base_path, dtype=torch.float32, trust_remote_code=trust)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(request.dest, safe_serialization=True)
    source = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else request.base_path
    AutoTokenizer.from_pretrained(str(source), trust_remote_code=trust).save_pretrained(request.dest)


def _wire() -> TextIO:
    """stdout for the protocol alone: the process's own stdout and stderr (libraries, model code) go to the log."""
    wire = os.fdopen(os.dup(1), "w", encoding="utf-8")
    log = os.open(LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    return wire


def _chat(request: LoadRequest, wire: TextIO) -> int:
    def send(line: WorkerLine) -> None:
        wire.write(line.model_dump_json() + "\n")
        wire.flush()

    def token(model: str, text: str) -> None:
        send(WorkerLine.model_validate({"type": "token", "model": model, "text": text}))

    pair = load_model(request)
    send(WorkerLine(type="ready"))
    for raw in sys.stdin:
        try:
            answer = answer_turn(pair, TurnRequest.model_validate_json(raw), token)
        except Exception as exc:  # this turn failed; the conversation goes on
            send(WorkerLine(type="error", text=failure_reason(exc)))
            continue
        send(WorkerLine(type="answer", answer=answer))
    return 0


def main(argv: list[str]) -> int:
    """chat or merge; exit 1 with an AEGIS-ERROR line in the log on a failure."""
    mode, raw = argv
    try:
        if mode == "chat":
            return _chat(LoadRequest.model_validate_json(raw), _wire())
        merge_adapter(MergeRequest.model_validate_json(raw))
    except Exception as exc:  # any failure: one line for the parent, the traceback in the log
        say_failure(exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
