"""Turn a dataset record into (prompt, completion) token ids with the prompt masked.

Pure standard library and duck-typed on the tokenizer: the renderer copies this module
verbatim into every training script, so the estimator, the script and the evals
share one definition of what a training example is.
"""

from __future__ import annotations

IGNORE_INDEX = -100
FORMATS = ("text", "prompt_completion", "instruction", "messages")
FALLBACK_PROMPT = "### Instruction:\n{prompt}\n\n### Response:\n"
# A chat is "messages" (role/content turns) or ShareGPT's "conversations" (from/value turns): one format.
CHAT_KEYS = ("messages", "conversations")
# ShareGPT's speaker names, and the roles a chat template knows them by.
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "assistant": "assistant",
    "system": "system",
}


def chat_turns(record: dict) -> list | None:
    """The record's chat turns: its 'messages', else its ShareGPT 'conversations'; None when it has neither."""
    for key in CHAT_KEYS:
        if isinstance(record.get(key), list):
            return record[key]
    return None


def chat_message(turn: object) -> dict:
    """One turn as {role, content}: OpenAI's role/content, or ShareGPT's from/value with its speakers mapped."""
    if not isinstance(turn, dict):
        raise TypeError(f"a chat turn is a {type(turn).__name__}, not an object")
    if "role" in turn:
        return {"role": str(turn["role"]), "content": str(turn.get("content") or "")}
    if "from" in turn:
        speaker = str(turn["from"]).strip().lower()
        if speaker not in SHAREGPT_ROLES:
            known = ", ".join(sorted(SHAREGPT_ROLES))
            raise ValueError(f"a ShareGPT turn comes from '{turn['from']}'; known speakers are {known}")
        return {"role": SHAREGPT_ROLES[speaker], "content": str(turn.get("value") or "")}
    raise KeyError(f"a chat turn has neither 'role'/'content' nor 'from'/'value' (found {sorted(turn)})")


def detect_format(record: dict) -> str:
    """Name the format a record is in, or raise ValueError naming the columns it has."""
    if chat_turns(record) is not None:
        return "messages"
    if "instruction" in record and "output" in record:
        return "instruction"
    if "prompt" in record and "completion" in record:
        return "prompt_completion"
    if isinstance(record.get("text"), str):
        return "text"
    raise ValueError(
        f"no usable text column (found {sorted(record)}); expected 'text', 'prompt'/'completion', "
        "'instruction'/'input'/'output' (alpaca), chat 'messages' or ShareGPT 'conversations'"
    )


def to_messages(record: dict, fmt: str) -> tuple[list[dict], str] | None:
    """Split a record into prompt messages and the assistant reply; None for plain text."""
    if fmt == "text":
        return None
    if fmt == "instruction":
        user = str(record["instruction"]).strip()
        extra = str(record.get("input") or "").strip()
        if extra:
            user = f"{user}\n\n{extra}"
        return [{"role": "user", "content": user}], str(record["output"])
    if fmt == "prompt_completion":
        return [{"role": "user", "content": str(record["prompt"])}], str(record["completion"])
    if fmt == "messages":
        turns = chat_turns(record)
        if turns is None:
            raise KeyError("a chat record needs a 'messages' or 'conversations' list")
        messages = [chat_message(turn) for turn in turns]
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None:
            raise ValueError("a chat record has no assistant turn to learn from")
        return messages[:last], messages[last]["content"]
    raise ValueError(f"unknown dataset format '{fmt}'; use one of {', '.join(FORMATS)}")


def prompt_text(tokenizer, prompt_messages: list[dict]) -> str:
    """The prompt as the model sees it: its chat template when it has one, a plain template otherwise."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(prompt_messages, tokenize=False, add_generation_prompt=True)
    turns = "\n\n".join(m["content"] for m in prompt_messages if m["role"] != "system")
    return FALLBACK_PROMPT.format(prompt=turns)


def encode_record(tokenizer, record: dict, fmt: str, seq_len: int) -> tuple[list[int], list[int], bool]:
    """Token ids and labels (prompt masked with IGNORE_INDEX), truncated to seq_len; and whether it was truncated."""
    split = to_messages(record, fmt)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if split is None:
        ids = tokenizer(str(record["text"]), add_special_tokens=False)["input_ids"] + eos
        labels = list(ids)
    else:
        prompt_messages, reply = split
        prompt_ids = tokenizer(prompt_text(tokenizer, prompt_messages), add_special_tokens=False)["input_ids"]
        reply_ids = tokenizer(reply.strip(), add_special_tokens=False)["input_ids"] + eos
        ids = prompt_ids + reply_ids
        labels = [IGNORE_INDEX] * len(prompt_ids) + reply_ids
    truncated = len(ids) > seq_len
    return ids[:seq_len], labels[:seq_len], truncated
