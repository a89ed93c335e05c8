"""Prompt rows for generation, the same in both trees (REFERENCE §0.2, §7.1).

`transformers` overwrites the first column with BOS and drops the last
column, assuming `[CLS] ... [SEP]` without padding. Here each row is read
through its attention mask (right- or left-padded alike), a leading `[CLS]`
becomes BOS (BOS is added when the row starts otherwise), and a trailing
`[SEP]` is dropped. For unpadded processor output this is exactly what
`transformers` does; for padded batches each row gets its single-row result.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _as_2d(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (batch, length), got {array.shape}")
    return array


def prompt_rows(
    input_ids: Any,
    attention_mask: Any,
    batch_size: int,
    bos_id: int,
    cls_id: int,
    sep_id: int,
) -> list[list[int]]:
    """One token list per image: BOS, then the prompt's words (no [SEP], no padding)."""
    if input_ids is None:
        return [[bos_id] for _ in range(batch_size)]
    ids = _as_2d(input_ids, "input_ids")
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"input_ids must be integers, got {ids.dtype}")
    mask = np.ones_like(ids) if attention_mask is None else _as_2d(attention_mask, "attention_mask")
    if mask.shape != ids.shape:
        raise ValueError(f"attention_mask shape {mask.shape} does not match input_ids shape {ids.shape}")
    if ids.shape[0] == 1 and batch_size > 1:
        ids, mask = np.repeat(ids, batch_size, 0), np.repeat(mask, batch_size, 0)
    if ids.shape[0] != batch_size:
        raise ValueError(
            f"input_ids has {ids.shape[0]} rows for {batch_size} images; give one prompt per image (or one for all)"
        )
    rows = []
    for row, keep in zip(ids, mask, strict=True):
        tokens = [int(t) for t in row[keep.astype(bool)]]
        if tokens and tokens[-1] == sep_id:
            tokens = tokens[:-1]
        if tokens and tokens[0] == cls_id:
            tokens[0] = bos_id
        elif not tokens or tokens[0] != bos_id:
            tokens = [bos_id, *tokens]
        rows.append(tokens)
    return rows


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, mask, position_ids), each (batch, longest): rows right-aligned, positions from 0 per row."""
    longest = max(len(row) for row in rows)
    ids = np.full((len(rows), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), longest), dtype=np.int64)
    for index, row in enumerate(rows):
        ids[index, longest - len(row) :] = row
        mask[index, longest - len(row) :] = 1
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    return ids, mask, positions
