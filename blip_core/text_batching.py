"""Truncation, special tokens and padding of tokenized batches (`transformers`' rules)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from blip_core.tokenization import BlipTokenizer


def _truncate(ids: list[int], pair: list[int] | None, budget: int, strategy: str, side: str) -> tuple:
    """Cut `ids` (and `pair`) to `budget` tokens in all, by the named strategy."""
    ids, pair = list(ids), (list(pair) if pair is not None else None)

    def cut(seq: list[int], count: int) -> list[int]:
        if count <= 0:
            return seq
        return seq[:-count] if side == "right" else seq[count:]

    excess = len(ids) + len(pair or []) - budget
    if excess <= 0:
        return ids, pair
    if pair is None or strategy == "only_first":
        if excess > len(ids):
            raise ValueError(f"cannot truncate the text to {budget} tokens: it needs {excess} fewer")
        return cut(ids, excess), pair
    if strategy == "only_second":
        if excess > len(pair):
            raise ValueError(f"cannot truncate text_pair to fit {budget} tokens")
        return ids, cut(pair, excess)
    for _ in range(excess):  # longest_first: one token at a time from the longer side
        if len(ids) > len(pair):
            ids = cut(ids, 1)
        else:
            pair = cut(pair, 1)
    return ids, pair


def encode_batch(
    tokenizer: BlipTokenizer,
    texts: list[str],
    pairs: list[str] | None,
    *,
    add_special_tokens: bool,
    padding: str | None,
    truncation: str | None,
    max_length: int | None,
    padding_side: str,
    pad_to_multiple_of: int | None,
) -> dict[str, list[list[int]]]:
    """Encode texts (and pairs) into `input_ids`, `token_type_ids` and `attention_mask` rows."""
    backend = tokenizer._tokenizer
    firsts = [enc.ids for enc in backend.encode_batch(texts, add_special_tokens=False)]
    seconds = [enc.ids for enc in backend.encode_batch(pairs, add_special_tokens=False)] if pairs else None
    n_special = (3 if seconds else 2) if add_special_tokens else 0
    limit = max_length if max_length is not None else tokenizer.model_max_length
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    rows_ids, rows_types = [], []
    for index, ids in enumerate(firsts):
        pair = seconds[index] if seconds else None
        if truncation is not None:
            ids, pair = _truncate(ids, pair, max(limit - n_special, 0), truncation, tokenizer.truncation_side)
        if add_special_tokens:
            ids = [cls_id, *ids, sep_id]
            pair = [*pair, sep_id] if pair is not None else None
        rows_ids.append(ids + (pair or []))
        rows_types.append([0] * len(ids) + [1] * len(pair or []))
    rows_mask = [[1] * len(row) for row in rows_ids]
    if padding is not None:
        target = max(len(row) for row in rows_ids) if padding == "longest" else limit
        if pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
        rows_ids = [_pad(row, target, tokenizer.pad_token_id, padding_side) for row in rows_ids]
        rows_types = [_pad(row, target, 0, padding_side) for row in rows_types]
        rows_mask = [_pad(row, target, 0, padding_side) for row in rows_mask]
    return {"input_ids": rows_ids, "token_type_ids": rows_types, "attention_mask": rows_mask}


def _pad(row: list[int], target: int, value: int, side: str) -> list[int]:
    filler = [value] * max(target - len(row), 0)
    return row + filler if side == "right" else filler + row
