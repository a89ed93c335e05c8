"""The decoding state of the NumPy generation loop and the `DecoderRunner` protocol it drives.

A port in meaning of `blip_torch/decoding.py` (its state part): prompts are
left-padded with per-row positions, the self-attention cache is preallocated
for the longest row, and each row keeps its own limits. The model itself is a
runner (ONNX Runtime sessions, or in the tests a blip_torch decoder) that takes
and returns NumPy arrays; the runner owns the cache, this state owns the masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from blip_core.generation.options import GenerationOptions, SpecialTokens
from blip_core.generation.prompts import left_pad


@runtime_checkable
class DecoderRunner(Protocol):
    """A text decoder (over the image or question states it was built with) that the host loop drives.

    The runner keeps the self-attention cache; the loop keeps the masks, positions and limits. Rows are
    image-major: after `expand(k)` rows `i*k .. i*k+k-1` belong to image (or question) `i`.
    """

    vocab_size: int

    def start(self, ids: np.ndarray, mask: np.ndarray | None, positions: np.ndarray, capacity: int) -> np.ndarray:
        """Run the left-padded prompts: ids/positions (B, P) int64, mask (B, P) int64 0/1 or None when no row
        is padded, one row per encoder row; keep a cache with room for `capacity` positions (P of them filled
        now). Returns the last position's logits (B, V) float32."""
        ...

    def expand(self, repeats: int) -> None:
        """Every row of the cache becomes `repeats` rows, image-major (`np.repeat(cache, repeats, 0)`)."""
        ...

    def reorder(self, order: np.ndarray) -> None:
        """Rows take the cache of rows `order` (int64 (N,), beams of the same image)."""
        ...

    def step(self, tokens: np.ndarray, positions: np.ndarray, key_mask: np.ndarray | None) -> np.ndarray:
        """Feed one token per row: tokens/positions (N, 1) int64, key_mask (N, cache length + 1) int64 0/1 or
        None (no row padded); append to the cache. Returns the next token's logits (N, V) float32."""
        ...


@dataclass
class Decoding:
    """Everything a step needs besides the runner's cache: per-row masks and limits (N rows)."""

    runner: DecoderRunner
    length: int  # positions stored in the cache
    key_mask: np.ndarray | None  # (N, capacity) int64 0/1; None when no prompt is padded
    prompt_lengths: np.ndarray  # (N,) int64 real prompt tokens, BOS included
    max_new: np.ndarray  # (N,) int64 new-token budget
    min_total: np.ndarray  # (N,) int64 minimum total length before an end token is allowed
    seen: np.ndarray | None  # (N, V) bool tokens present so far, for the repetition penalty
    prompt: np.ndarray  # (N, P) int64 the left-padded prompts (the encoder n-gram ban reads them)
    prompt_tokens: np.ndarray | None  # (N, V) bool tokens of the prompt, for the encoder repetition penalty

    def expand(self, repeats: int) -> None:
        """Give every image `repeats` rows (image-major)."""
        if repeats == 1:
            return
        self.runner.expand(repeats)
        for name in ("key_mask", "prompt_lengths", "max_new", "min_total", "seen", "prompt", "prompt_tokens"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, np.repeat(value, repeats, 0))

    def mark(self, tokens: np.ndarray) -> None:
        """Record each row's new token (N,) for the repetition penalty."""
        if self.seen is not None:
            self.seen[np.arange(tokens.shape[0]), tokens] = True

    def reorder(self, order: np.ndarray) -> None:
        """Rows take the cache and seen tokens of rows `order` (int64 (N,))."""
        self.runner.reorder(order)
        if self.seen is not None:
            self.seen = self.seen[order]

    def step(self, tokens: np.ndarray, generated: int) -> np.ndarray:
        """Feed one new token per row (N,); the float32 logits of the next one (N, V)."""
        key_mask = self.key_mask[:, : self.length + 1] if self.key_mask is not None else None
        positions = (self.prompt_lengths + generated - 1)[:, None].astype(np.int64)
        logits = self.runner.step(tokens[:, None].astype(np.int64), positions, key_mask)
        self.length += 1
        return np.asarray(logits, np.float32)


def token_mask(ids: np.ndarray, mask: np.ndarray, vocab_size: int) -> np.ndarray:
    """(N, V) bool: the tokens each row holds (where `mask` is 1)."""
    found = np.zeros((ids.shape[0], vocab_size), dtype=bool)
    rows = np.broadcast_to(np.arange(ids.shape[0])[:, None], ids.shape)
    found[rows[mask.astype(bool)], ids[mask.astype(bool)]] = True
    return found


def start(
    runner: DecoderRunner, rows: list[list[int]], options: GenerationOptions, max_positions: int, pad_token_id: int
) -> tuple[Decoding, np.ndarray, np.ndarray]:
    """Left-pad the prompts, size the cache and run the prompts once (one row per image).

    Returns the decoding state, the padded prompt ids (B, P) int64 and the first logits (B, V) float32.
    Raises `ValueError` when a prompt leaves no room for a new token or exceeds `max_length`.
    """
    limits = [options.length_limits(len(row), max_positions) for row in rows]
    ids, mask, positions = left_pad(rows, pad_token_id)
    max_new = np.array([limit[0] for limit in limits], np.int64)
    min_total = np.array([limit[1] for limit in limits], np.int64)
    capacity = ids.shape[1] + int(max_new.max())
    padded = bool((mask == 0).any())
    key_mask = None
    if padded:
        key_mask = np.ones((len(rows), capacity), np.int64)
        key_mask[:, : ids.shape[1]] = mask
    vocab = runner.vocab_size
    seen = token_mask(ids, mask, vocab) if options.repetition_penalty != 1.0 else None
    prompt_tokens = token_mask(ids, mask, vocab) if options.encoder_repetition_penalty != 1.0 else None
    logits = runner.start(ids, mask if padded else None, positions, capacity)
    state = Decoding(
        runner, ids.shape[1], key_mask, mask.sum(1), max_new, min_total, seen, ids, prompt_tokens
    )
    return state, ids, np.asarray(logits, np.float32)


def is_end(tokens: np.ndarray, special: SpecialTokens) -> np.ndarray:
    """Whether each token is one of the end tokens (bool, the shape of `tokens`)."""
    if len(special.eos) == 1:
        return tokens == special.eos[0]
    return np.isin(tokens, np.asarray(special.eos))
