"""Outputs of an empty batch (0 images or 0 texts), built without running the model.

Both trees call these with a `zeros(shape)` function of their framework; the
shapes and the structure (which fields are set, how many hidden states) are
decided here once, so an empty batch gives the same outputs in PyTorch and
Keras, with the structure a non-empty call returns, and never reaches a
framework kernel (Keras' Conv2D fails on 0 images on AVX-512 CPUs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from blip_core.modeling.limits import vision_tokens
from blip_core.modeling.outputs import BaseModelOutputWithPooling, BaseModelOutputWithPoolingAndCrossAttentions

Zeros = Callable[[tuple[int, ...]], Any]


def is_empty(rows: int | None) -> bool:
    """True when a batch is known to hold no rows (None: unknown, inside a graph)."""
    return rows == 0


def _per_layer(count: int, shape: tuple[int, ...], zeros: Zeros, wanted: bool) -> tuple | None:
    return tuple(zeros(shape) for _ in range(count)) if wanted else None


def vision_output(
    config: Any,
    pixel_shape: tuple[int, int, int, int],
    interpolate_pos_encoding: bool,
    output_attentions: bool,
    output_hidden_states: bool,
    zeros: Zeros,
) -> BaseModelOutputWithPooling:
    """What the vision stack returns for 0 images: last_hidden_state (0, N, D), pooler_output (0, D),
    hidden_states (L+1) x (0, N, D), attentions L x (0, heads, N, N). Raises the size error a
    non-empty batch of this size would raise."""
    batch, _, height, width = pixel_shape
    tokens = vision_tokens(config, height, width, interpolate_pos_encoding)
    hidden = (batch, tokens, config.hidden_size)
    layers = config.num_hidden_layers
    return BaseModelOutputWithPooling(
        zeros(hidden),
        zeros((batch, config.hidden_size)),
        _per_layer(layers + 1, hidden, zeros, output_hidden_states),
        _per_layer(layers, (batch, config.num_attention_heads, tokens, tokens), zeros, output_attentions),
    )


def text_output(
    config: Any,
    length: int,
    past: int,
    encoder_length: int | None,
    pooled: bool,
    output_attentions: bool,
    output_hidden_states: bool,
    cache: Any,
    zeros: Zeros,
) -> BaseModelOutputWithPoolingAndCrossAttentions:
    """What the text stack returns for 0 texts of `length` tokens (after `past` cached ones):
    last_hidden_state (0, T, H), pooler_output (0, H) when it has a pooler, hidden_states
    (L+1) x (0, T, H), attentions L x (0, heads, T, past+T), cross_attentions L x (0, heads, T, S)
    when it attends to `encoder_length` states, and the given cache."""
    width, heads, layers = config.hidden_size, config.num_attention_heads, config.num_hidden_layers
    hidden = (0, length, width)
    cross = encoder_length is not None and output_attentions
    return BaseModelOutputWithPoolingAndCrossAttentions(
        zeros(hidden),
        zeros((0, width)) if pooled else None,
        _per_layer(layers + 1, hidden, zeros, output_hidden_states),
        cache,
        _per_layer(layers, (0, heads, length, past + length), zeros, output_attentions),
        _per_layer(layers, (0, heads, length, encoder_length or 0), zeros, cross),
    )


def cache_entry_shapes(config: Any, length: int, encoder_length: int | None) -> tuple[tuple, tuple | None]:
    """(self-attention, cross-attention) key/value shapes an empty batch stores in a cache per layer."""
    heads = config.num_attention_heads
    size = config.hidden_size // heads
    cross = None if encoder_length is None else (0, heads, encoder_length, size)
    return (0, heads, length, size), cross
