"""The plain baseline: a fine-tuning loop written the common way, to compare the rendered script against.

Every example is padded to seq_len (tokenizer(..., padding="max_length")), no packing, fp32, no autocast,
one forward/backward/AdamW step per batch. The text of each example is the same as the rendered script's
(tools.recipe.formatting: the model's chat template, then the reply and eos), so both train on the same data;
labels are the input ids with the padding masked, as most tutorials do.

Run:  python bench/baseline_train.py --model PATH --data data/support_train.jsonl --seq-len 256 \
          --batch-size 4 --max-steps 10 [--method lora] [--device cuda] [--out result.json]
Prints one JSON object: tokens (all, padding included), useful_tokens (non-padding), train_seconds, rates, peak memory.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.recipe.formatting import detect_format, prompt_text, to_messages  # noqa: E402


def example_text(tokenizer: Any, record: dict[str, Any]) -> str:
    """The whole example as one string: the same tokens the rendered script trains on."""
    fmt = detect_format(record)
    split = to_messages(record, fmt)
    eos = tokenizer.eos_token or ""
    if split is None:
        return str(record["text"]) + eos
    prompt_messages, reply = split
    return prompt_text(tokenizer, prompt_messages) + reply.strip() + eos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="plain padded fp32 fine-tuning baseline")
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--method", choices=("full_finetune", "lora"), default="full_finetune")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    records = [json.loads(line) for line in Path(args.data).read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(args.seed).shuffle(records)
    texts = [example_text(tokenizer, r) for r in records]
    enc = tokenizer(
        texts,
        padding="max_length",
        truncation=True,
        max_length=args.seq_len,
        add_special_tokens=False,
        return_tensors="pt",
    )
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(device)
    if args.method == "lora":
        from peft import LoraConfig, get_peft_model

        targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets, task_type="CAUSAL_LM"))
    model.config.use_cache = False
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)

    n = enc["input_ids"].shape[0]
    steps = tokens = useful = 0
    losses = []
    train_started = time.monotonic()
    while steps < args.max_steps:
        for first in range(0, n, args.batch_size):
            ids = enc["input_ids"][first : first + args.batch_size].to(device)
            mask = enc["attention_mask"][first : first + args.batch_size].to(device)
            labels = ids.masked_fill(mask == 0, -100)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            steps += 1
            tokens += ids.numel()
            useful += int(mask.sum())
            if steps >= args.max_steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    train_s = time.monotonic() - train_started
    result = {
        "steps": steps,
        "tokens": tokens,
        "useful_tokens": useful,
        "padding_fraction": 1 - useful / tokens,
        "train_seconds": train_s,
        "tokens_per_s": tokens / train_s,
        "useful_tokens_per_s": useful / train_s,
        "first_loss": losses[0],
        "final_loss": losses[-1],
        "peak_mem_mb": peak,
        "duration_s": time.monotonic() - started,
    }
    text = json.dumps(result)
    print(text, flush=True)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
