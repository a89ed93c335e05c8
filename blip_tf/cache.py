"""Keys and values of the text attention layers, kept across decoding steps. Twin of `blip_torch/cache.py`.

Forced difference: with a capacity (generation under XLA) shapes must stay
static, so `update_self` writes in place with a dynamic update slice and returns
the *whole* buffers; the attention mask hides positions not yet written.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla


class TFKVCache:
    """Per-layer attention cache; `length` counts the positions already stored."""

    def __init__(self, num_layers: int, capacity: int | None = None) -> None:
        self.self_entries: list[tuple[tf.Tensor, tf.Tensor] | None] = [None] * num_layers
        self.cross_entries: list[tuple[tf.Tensor, tf.Tensor] | None] = [None] * num_layers
        self.capacity = capacity
        self.length: int | tf.Tensor = 0
        self.cross_group = 1  # rows of the batch per row of the cross-attention entries

    def get_seq_length(self) -> int | tf.Tensor:
        return self.length

    def update_self(self, layer: int, key: tf.Tensor, value: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Store this call's keys/values (N, H, T, D) after the past ones; return all of them."""
        entry = self.self_entries[layer]
        if self.capacity is None:
            if entry is not None:
                key, value = tf.concat([entry[0], key], axis=2), tf.concat([entry[1], value], axis=2)
            self.self_entries[layer] = (key, value)
            return key, value
        if entry is None:
            shape = (tf.shape(key)[0], key.shape[1], self.capacity, key.shape[3])
            entry = (tf.zeros(shape, key.dtype), tf.zeros(shape, value.dtype))
        start = [0, 0, tf.cast(self.length, tf.int32), 0]
        entry = (xla.dynamic_update_slice(entry[0], key, start), xla.dynamic_update_slice(entry[1], value, start))
        self.self_entries[layer] = entry
        return entry

    def advance(self, steps: int) -> None:
        """Mark `steps` more positions as stored (after every layer has been updated)."""
        self.length = self.length + steps

    def reorder(self, index: tf.Tensor) -> None:
        """Keep the self-attention rows named by `index` (beam search), in that order."""
        for layer, entry in enumerate(self.self_entries):
            if entry is not None:
                self.self_entries[layer] = (tf.gather(entry[0], index), tf.gather(entry[1], index))

    def expand(self, repeats: int) -> None:
        """Repeat every self-attention row `repeats` times (image-major), e.g. into beams."""
        for layer, entry in enumerate(self.self_entries):
            if entry is not None:
                self.self_entries[layer] = tuple(tf.repeat(t, repeats, axis=0) for t in entry)
        self.cross_group *= repeats
