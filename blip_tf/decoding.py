"""The decoding state and one step of the captioning and VQA decoders in TensorFlow: `TFDecoding` (cache,
per-row masks and limits, carried through the XLA loop as tensors), `start` (prompts run once into a cache
of fixed capacity), the end-token test and the per-step output buffers. The loops that drive it are in
`generation.py` and `beam_search.py`. Twin of `blip_torch/decoding.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from blip_core.generation.options import GenerationOptions, SpecialTokens
from blip_tf.cache import TFKVCache


@dataclass
class TFDecoding:
    """Everything a step needs: the decoder, its cache, and per-row masks and limits (N rows)."""

    decoder: Any
    cache: TFKVCache
    encoder_hidden_states: tf.Tensor
    encoder_attention_mask: tf.Tensor | None
    key_mask: tf.Tensor  # (N, capacity) 0/1; always given: XLA attends over the whole buffer
    prompt_lengths: tf.Tensor  # (N,) real prompt tokens, BOS included
    max_new: tf.Tensor  # (N,) new-token budget
    min_total: tf.Tensor  # (N,) minimum total length before EOS is allowed
    seen: tf.Tensor | None  # (N, V) tokens present so far, for the repetition penalty
    prompt: tf.Tensor  # (N, P) the left-padded prompts (the encoder n-gram ban reads them)
    prompt_tokens: tf.Tensor | None  # (N, V) tokens of the prompt, for the encoder repetition penalty

    def expand(self, repeats: int) -> None:
        """Give every image `repeats` rows (image-major)."""
        if repeats == 1:
            return
        self.cache.expand(repeats)
        for name in ("key_mask", "prompt_lengths", "max_new", "min_total", "seen", "prompt", "prompt_tokens"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, tf.repeat(value, repeats, axis=0))

    def mark(self, tokens: tf.Tensor) -> None:
        if self.seen is not None:
            self.seen = self.seen | tf.cast(tf.one_hot(tokens, self.seen.shape[-1]), tf.bool)

    def reorder(self, order: tf.Tensor) -> None:
        """Rows take the cache and seen tokens of rows `order` (beams of the same image)."""
        self.cache.reorder(order)
        if self.seen is not None:
            self.seen = tf.gather(self.seen, order)

    def step(self, tokens: tf.Tensor, generated: tf.Tensor) -> tf.Tensor:
        """Feed one new token per row; the float32 logits of the next one (N, V)."""
        out = self.decoder(
            input_ids=tokens[:, None],
            attention_mask=self.key_mask,
            position_ids=(self.prompt_lengths + generated - 1)[:, None],
            encoder_hidden_states=self.encoder_hidden_states,
            encoder_attention_mask=self.encoder_attention_mask,
            past_key_values=self.cache,
            use_cache=True,
            return_dict=True,
        )
        return tf.cast(out.logits[:, -1], tf.float32)

    # The loop carries the mutable parts as tensors.
    def carry(self) -> dict[str, Any]:
        carried = {
            "entries": list(self.cache.self_entries),
            "length": tf.convert_to_tensor(self.cache.length, tf.int32),
        }
        if self.seen is not None:
            carried["seen"] = self.seen
        return carried

    def restore(self, carried: dict[str, Any]) -> None:
        self.cache.self_entries = list(carried["entries"])
        self.cache.length = carried["length"]
        if self.seen is not None:
            self.seen = carried["seen"]


def _token_mask(ids: tf.Tensor, mask: tf.Tensor, vocab_size: int) -> tf.Tensor:
    """(N, V) bool: the tokens each row holds (where `mask` is 1)."""
    hits = tf.one_hot(ids, vocab_size) * tf.cast(mask, tf.float32)[..., None]
    return tf.reduce_max(hits, axis=1) > 0


def start(decoder, ids, mask, positions, max_new, min_total, states, states_mask, capacity, options):
    """Run the prompts once (one row per image) into a cache of `capacity` positions.

    Returns the decoding state, the padded prompt ids (B, P) and the first logits (B, V).
    """
    text = decoder.config
    width = ids.shape[1]
    key_mask = tf.concat([mask, tf.ones((tf.shape(ids)[0], capacity - width), mask.dtype)], axis=1)
    seen = _token_mask(ids, mask, text.vocab_size) if options.repetition_penalty != 1.0 else None
    prompt_tokens = _token_mask(ids, mask, text.vocab_size) if options.encoder_repetition_penalty != 1.0 else None
    cache = TFKVCache(text.num_hidden_layers, capacity)
    state = TFDecoding(
        decoder,
        cache,
        states,
        states_mask,
        key_mask,
        tf.reduce_sum(mask, 1),
        max_new,
        min_total,
        seen,
        ids,
        prompt_tokens,
    )
    out = decoder(
        input_ids=ids,
        attention_mask=key_mask,
        position_ids=positions,
        encoder_hidden_states=states,
        encoder_attention_mask=states_mask,
        past_key_values=cache,
        use_cache=True,
        return_dict=True,
    )
    return state, ids, tf.cast(out.logits[:, -1], tf.float32)


def set_column(values: tf.Tensor, column: tf.Tensor, new: tf.Tensor) -> tf.Tensor:
    """values (..., T) with column `column` replaced by new (...)."""
    return tf.where(tf.range(values.shape[-1]) == column, new[..., None], values)


def set_row(values: tf.Tensor, row: tf.Tensor, new: tf.Tensor) -> tf.Tensor:
    """values (S, ...) with row `row` replaced by new (...): the per-step output buffers."""
    return tf.tensor_scatter_nd_update(values, tf.reshape(row, (1, 1)), new[None])


def is_end(tokens: tf.Tensor, tokens_ids: SpecialTokens) -> tf.Tensor:
    """Whether each token is one of the end tokens."""
    return tf.reduce_any(tokens[..., None] == tf.constant(tokens_ids.eos, tokens.dtype), axis=-1)


def step_buffers(options: GenerationOptions, steps: int, rows: tf.Tensor, vocab: int) -> dict[str, tf.Tensor]:
    """Zeroed (steps, rows, V) buffers for the per-step scores and logits the options ask for."""
    wanted = [("scores", options.output_scores), ("raw_logits", options.output_logits)]
    return {name: tf.zeros((steps, rows, vocab)) for name, on in wanted if on}


def record(loop: dict[str, Any], generated: tf.Tensor, scores: tf.Tensor, logits: tf.Tensor) -> dict[str, Any]:
    """The step buffers with this step's processed scores and raw logits written in."""
    out = {}
    if "scores" in loop:
        out["scores"] = set_row(loop["scores"], generated, scores)
    if "raw_logits" in loop:
        out["raw_logits"] = set_row(loop["raw_logits"], generated, logits)
    return out
