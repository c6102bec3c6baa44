"""What the model worker (tools.use.model_worker) and the aegis side say to each other: requests in, lines out.

Everything here is data, checked on arrival in both directions: the worker runs the model's own code, so nothing
it sends is trusted to be well formed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TokenFn = Callable[[str], None]  # receives each piece of an answer as it is generated
MAX_NEW_TOKENS = 200
LOG_FILE = "worker.log"  # in the chat worker's working folder: all it prints but the protocol


class GenerationSettings(BaseModel):
    """How an answer is generated: greedy unless a temperature is given."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(default=MAX_NEW_TOKENS, ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0.0, le=5.0, description="0: greedy, the same answer each time.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int = Field(default=0, ge=0)


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str
    tuned: str
    base: str | None = None


class LoadRequest(BaseModel):
    """The chat worker's start: which model to load (folders it is given read-only)."""

    model_config = ConfigDict(extra="forbid")

    final_dir: str
    base_path: str
    trust_remote_code: bool = False
    with_base: bool = False


class TurnRequest(BaseModel):
    """One turn: the conversation so far (ending with the person's message), one JSON line on the worker's stdin."""

    model_config = ConfigDict(extra="forbid")

    messages: list[dict[str, str]]
    settings: GenerationSettings = Field(default_factory=GenerationSettings)
    with_base: bool = False


class WorkerLine(BaseModel):
    """One JSON line on the chat worker's stdout: ready once loaded, then per turn tokens and an answer (or error)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["ready", "token", "answer", "error"]
    model: Literal["tuned", "base"] = "tuned"  # whose token
    text: str = ""  # a token's text, or an error's message
    answer: Answer | None = None


class MergeRequest(BaseModel):
    """The merge worker's job: fold the adapter into its base and save the weights and tokenizer in ``dest``."""

    model_config = ConfigDict(extra="forbid")

    base_path: str
    adapter_dir: str
    dest: str
    trust_remote_code: bool = False
