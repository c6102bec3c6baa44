"""The rows the model trains on, and the batches that keep packed examples from seeing each other.

Packing concatenates examples into rows of seq_len tokens (an example that does not fit in the room
left continues in the next row, so the row count is ceil(tokens / seq_len), as the estimator prices it).
Each piece of an example restarts its position ids at 0 and may attend only to itself: a block-diagonal
causal mask (4D, built here) for SDPA and eager attention, or, where flash attention runs, one flat row
whose restarting position ids flash attention's variable-length kernel reads as separate sequences.
The first label of each piece is masked: the token before it belongs to another example.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from tools.recipe.data import Example
from tools.recipe.formatting import IGNORE_INDEX

PackedRow = tuple[list[int], list[int], list[int]]  # token ids, labels, position ids (0 at each example's start)


def pack_examples(examples: list[Example], seq_len: int) -> list[PackedRow]:
    """Examples concatenated into rows of seq_len tokens; a row with no label to learn from is left out."""
    rows: list[PackedRow] = []
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for example_ids, example_labels in examples:
        start = 0
        while start < len(example_ids):
            room = seq_len - len(ids)
            piece = example_ids[start : start + room]
            ids.extend(piece)
            labels.extend([IGNORE_INDEX, *example_labels[start + 1 : start + room]])
            positions.extend(range(len(piece)))
            start += room
            if len(ids) == seq_len:
                rows.append((ids, labels, positions))
                ids, labels, positions = [], [], []
    rows.append((ids, labels, positions))
    # A row holding only masked prompt tokens has no loss (0/0 = NaN): leave it out.
    return [row for row in rows if any(label != IGNORE_INDEX for label in row[1][1:])]


def attention_kind(config: Any) -> str:
    """How a model's attention takes the packing boundaries, from the implementation transformers chose.

    'varlen': flash attention, one flat row; 'bool': SDPA's boolean mask; 'float': an additive mask (eager, others).
    """
    implementation = str(getattr(config, "_attn_implementation", None) or "eager")
    if "flash" in implementation:
        return "varlen"
    return "bool" if implementation == "sdpa" else "float"


def flash_attention_available(device: str, half_precision: bool) -> bool:
    """flash-attn installed, on a GPU, with fp16/bf16 weights (its kernels take nothing else)."""
    return device == "cuda" and half_precision and importlib.util.find_spec("flash_attn") is not None


def collate_padded(rows: list[Example], pad_id: int, pad_to: int | None) -> dict[str, Any]:
    """One example per row, padded to pad_to (unpacked training pads every row to seq_len) or to the longest."""
    import torch

    width = pad_to or max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, labs) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(labs)] = torch.tensor(labs)
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


def collate_packed(rows: list[PackedRow], pad_id: int, kind: str, mask_dtype: Any = None) -> dict[str, Any]:
    """A batch of packed rows with their position ids, and the mask that keeps examples apart (see the module)."""
    import torch

    if kind == "varlen":  # flash attention reads one flat row; there is no padding at all
        flat = [[value for row in rows for value in row[part]] for part in range(3)]
        input_ids, labels, positions = (torch.tensor([values], dtype=torch.long) for values in flat)
        return {"input_ids": input_ids, "labels": labels, "position_ids": positions}
    width = max(len(ids) for ids, _, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    # Padding is a piece of its own (positions from 0), so no real token attends to it and no row is all masked.
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, labs, pos) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(labs)] = torch.tensor(labs)
        positions[i, : len(pos)] = torch.tensor(pos)
        positions[i, len(pos) :] = torch.arange(width - len(pos))
    pieces = (positions == 0).cumsum(dim=-1)
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    allowed = (pieces[:, :, None] == pieces[:, None, :]) & causal
    if kind == "bool":
        mask = allowed[:, None]
    else:
        dtype = mask_dtype or torch.float32
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)[:, None]
    return {"input_ids": input_ids, "labels": labels, "position_ids": positions, "attention_mask": mask}
