"""Packed examples cannot see each other: each scores as it would alone, on the real (tiny) Llama model."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tools.inputs.local_models import resolve_model
from tools.recipe.formatting import IGNORE_INDEX, encode_record
from tools.recipe.packing import attention_kind, collate_packed, pack_examples

TOLERANCE = 1e-4  # fp32 on a CPU: the packed and the lone forward differ only in summation order
RECORDS = [
    {"prompt": "What is the capital of France?", "completion": "Paris is the capital of France."},
    {"prompt": "Say hello.", "completion": "Hello there, how are you today?"},
    {"prompt": "Hi", "completion": "Hey."},
    {"prompt": "Count to three.", "completion": "One, two."},
]


@pytest.fixture(scope="module")
def tiny() -> tuple[str, AutoTokenizer]:
    path = resolve_model("local:tiny-llama").path
    return path, AutoTokenizer.from_pretrained(path)


def _examples(tokenizer) -> list[tuple[list[int], list[int]]]:
    return [encode_record(tokenizer, r, "prompt_completion", 256)[:2] for r in RECORDS]


def _alone_loss(model, ids: list[int], labels: list[int]) -> float:
    with torch.no_grad():
        return float(model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss)


def _piece_losses(model, batch: dict, lengths: list[list[int]]) -> list[float]:
    """Each example's mean loss, read from the logits of the packed forward (pieces in row order)."""
    with torch.no_grad():
        logits = model(**batch).logits
    losses = []
    for row, row_lengths in enumerate(lengths):
        start = 0
        for length in row_lengths:
            piece = slice(start, start + length)
            shifted = logits[row, piece][:-1]
            target = batch["labels"][row, piece][1:]
            losses.append(float(torch.nn.functional.cross_entropy(shifted, target, ignore_index=IGNORE_INDEX)))
            start += length
    return losses


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_a_packed_batch_scores_each_example_as_if_alone(tiny, implementation: str) -> None:
    path, tokenizer = tiny
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=implementation, dtype=torch.float32).eval()
    examples = _examples(tokenizer)
    seq_len = len(examples[0][0]) + len(examples[1][0])  # row 1: examples 0 and 1; row 2: 2 and 3, padded
    assert len(examples[2][0]) + len(examples[3][0]) < seq_len
    rows = pack_examples(examples, seq_len)
    lengths = [[len(e[0]) for e in examples[:2]], [len(e[0]) for e in examples[2:]]]
    assert [sum(row) for row in lengths] == [len(row[0]) for row in rows]

    batch = collate_packed(rows, tokenizer.pad_token_id, attention_kind(model.config))
    packed = _piece_losses(model, batch, lengths)
    alone = [_alone_loss(model, ids, labels) for ids, labels in examples]
    difference = max(abs(p - a) for p, a in zip(packed, alone, strict=True))
    print(f"{implementation}: largest per-example loss difference, packed vs alone: {difference:.2e}")
    assert difference < TOLERANCE

    # The batch loss the optimizer sees is the token-weighted mean of those same losses: no target crosses examples.
    counts = [sum(label != IGNORE_INDEX for label in labels[1:]) for _, labels in examples]
    with torch.no_grad():
        batch_loss = float(model(**batch).loss)
    assert batch_loss == pytest.approx(
        sum(a * n for a, n in zip(alone, counts, strict=True)) / sum(counts), abs=TOLERANCE
    )

    # Control: the same rows with a plain causal mask and running positions let examples see each other.
    plain = {"input_ids": batch["input_ids"], "labels": batch["labels"]}
    leaked = max(abs(p - a) for p, a in zip(_piece_losses(model, plain, lengths), alone, strict=True))
    assert leaked > 100 * TOLERANCE


def test_the_flat_layout_for_flash_attention_keeps_the_same_boundaries(tiny) -> None:
    """flash attention's varlen kernel finds the sequences where position ids restart; the 4D mask marks the same."""
    path, tokenizer = tiny
    examples = _examples(tokenizer)
    rows = pack_examples(examples, len(examples[0][0]) + len(examples[1][0]))
    flat = collate_packed(rows, tokenizer.pad_token_id, "varlen")
    assert set(flat) == {"input_ids", "labels", "position_ids"} and flat["input_ids"].shape[0] == 1
    starts = (flat["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert starts == [0, *[sum(len(e[0]) for e in examples[:i]) for i in range(1, len(examples))]]
    assert all(flat["labels"][0, s] == IGNORE_INDEX for s in starts)  # nothing predicts across a boundary
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    row = (flat["input_ids"][0].tolist(), flat["labels"][0].tolist(), flat["position_ids"][0].tolist())
    boxed = collate_packed([row], tokenizer.pad_token_id, "bool")  # the flat row, its boundaries as a mask
    lengths = [[len(e[0]) for e in examples]]
    alone = [_alone_loss(model, ids, labels) for ids, labels in examples]
    assert max(abs(p - a) for p, a in zip(_piece_losses(model, boxed, lengths), alone, strict=True)) < TOLERANCE


def test_an_example_too_long_for_the_room_left_continues_as_its_own_piece() -> None:
    examples = [([1, 2, 3], [1, 2, 3]), ([4, 5, 6, 7], [-100, 5, 6, 7])]
    rows = pack_examples(examples, seq_len=5)
    assert rows == [
        ([1, 2, 3, 4, 5], [IGNORE_INDEX, 2, 3, IGNORE_INDEX, 5], [0, 1, 2, 0, 1]),
        ([6, 7], [IGNORE_INDEX, 7], [0, 1]),
    ]
    batch = collate_packed(rows, pad_id=0, kind="bool")
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]]  # padding is a piece of its own
    mask = batch["attention_mask"][0, 0]
    assert mask[4].tolist() == [False, False, False, True, True] and not mask[3, 2]
