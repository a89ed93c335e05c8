"""Keys and values of the text attention layers, kept across decoding steps.

Self-attention entries grow by one block per call, written in place into
preallocated buffers when a capacity is known (generation), so no step
concatenates. Cross-attention keys/values are computed once per call of
`generate` and never copied: the rows that share an image (its beams or
returned sequences) are folded into the query axis instead (`cross_group`),
so beam reordering touches only the self-attention entries.
"""

from __future__ import annotations

import torch


class KVCache:
    """Per-layer attention cache; `length` counts the positions already stored."""

    def __init__(self, num_layers: int, capacity: int | None = None) -> None:
        self.self_entries: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * num_layers
        self.cross_entries: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * num_layers
        self.capacity = capacity
        self.length = 0
        self.cross_group = 1  # rows of the batch per row of the cross-attention entries

    def get_seq_length(self) -> int:
        return self.length

    def update_self(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this call's keys/values (N, H, T, D) after the past ones; return all of them."""
        start, end = self.length, self.length + key.shape[2]
        entry = self.self_entries[layer]
        if self.capacity is None:
            if entry is not None:
                key, value = torch.cat([entry[0], key], dim=2), torch.cat([entry[1], value], dim=2)
            self.self_entries[layer] = (key, value)
            return key, value
        if end > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} positions; position {end} does not fit")
        if entry is None:
            shape = (key.shape[0], key.shape[1], self.capacity, key.shape[3])
            entry = (key.new_empty(shape), value.new_empty(shape))
            self.self_entries[layer] = entry
        entry[0][:, :, start:end] = key
        entry[1][:, :, start:end] = value
        return entry[0][:, :, :end], entry[1][:, :, :end]

    def advance(self, steps: int) -> None:
        """Mark `steps` more positions as stored (after every layer has been updated)."""
        self.length += steps

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the self-attention rows named by `index` (beam search), in that order."""
        for entry in self.self_entries:
            if entry is None:
                continue
            for buffer in entry:  # copy only the filled positions, back into the same buffer
                filled = buffer[:, :, : self.length]
                filled.copy_(filled.index_select(0, index))

    def expand(self, repeats: int) -> None:
        """Repeat every self-attention row `repeats` times (image-major), e.g. into beams."""
        for layer, entry in enumerate(self.self_entries):
            if entry is not None:
                self.self_entries[layer] = tuple(t.repeat_interleave(repeats, dim=0) for t in entry)
        self.cross_group *= repeats
