"""The text decoder in ONNX Runtime as the host generation loop's `DecoderRunner`.

The loop (`blip_core.generation.host`) sees N = B * G rows, image-major; the decoder graph takes them as
(B, G) so that an image's rows share its cross-attention keys/values without copies. The self-attention
cache lives here as the graph's last `present_key_{i}`/`present_value_{i}` (one (B, G, H, P, d) array per
layer); `expand` and `reorder` act on its G axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class OnnxDecoderRunner:
    """Decodes against encoder states (B, T, D) whose cross keys/values `decoder_cross` computes once."""

    def __init__(
        self,
        decoder: Any,
        cross: Any,
        encoder_hidden_states: np.ndarray,
        encoder_attention_mask: np.ndarray | None,
        vocab_size: int,
        layers: int,
    ) -> None:
        self.decoder, self.vocab_size, self.layers = decoder, vocab_size, layers
        self.cross = cross(encoder_hidden_states=np.asarray(encoder_hidden_states, np.float32))
        images, tokens = encoder_hidden_states.shape[:2]
        mask = np.ones((images, tokens), np.int64) if encoder_attention_mask is None else encoder_attention_mask
        self.cross["encoder_attention_mask"] = np.asarray(mask, np.int64)
        self.images, self.group = images, 1
        self.cache: dict[str, np.ndarray] = {}  # past_key_{i} / past_value_{i}: (B, G, H, P, d)

    def _run(self, ids, positions, mask, past_mask) -> np.ndarray:
        shape = (self.images, self.group, -1)
        out = self.decoder(
            input_ids=ids.reshape(shape),
            position_ids=positions.reshape(shape),
            attention_mask=mask.reshape(shape),
            past_attention_mask=past_mask.reshape(shape),
            **self.cache,
            **self.cross,
        )
        self.cache = {
            name.replace("present_", "past_"): value for name, value in out.items() if name.startswith("present_")
        }
        logits = out["logits"]
        return logits.reshape(-1, logits.shape[-1])

    def start(self, ids: np.ndarray, mask: np.ndarray | None, positions: np.ndarray, capacity: int) -> np.ndarray:
        """Run the left-padded prompts (B, P); the last position's logits (B, V) float32."""
        images, heads, _, size = self.cross["cross_key_0"].shape
        empty = np.zeros((images, 1, heads, 0, size), np.float32)
        self.cache = {f"past_{kind}_{i}": empty for i in range(self.layers) for kind in ("key", "value")}
        mask = np.ones_like(ids) if mask is None else mask
        return self._run(ids, positions, mask, np.zeros((ids.shape[0], 0), np.int64))

    def expand(self, repeats: int) -> None:
        self.cache = {name: np.repeat(value, repeats, axis=1) for name, value in self.cache.items()}
        self.group *= repeats

    def reorder(self, order: np.ndarray) -> None:
        """Rows take the cache of rows `order` (rows of the same image: its beams)."""
        rows = np.asarray(order, np.int64)
        self.cache = {
            name: value.reshape(-1, *value.shape[2:])[rows].reshape(value.shape) for name, value in self.cache.items()
        }

    def step(self, tokens: np.ndarray, positions: np.ndarray, key_mask: np.ndarray | None) -> np.ndarray:
        """One token per row (N, 1); key_mask (N, cached + 1) or None. The next logits (N, V) float32."""
        rows, cached = tokens.shape[0], self.cache["past_key_0"].shape[3]
        if key_mask is None:
            past_mask, mask = np.ones((rows, cached), np.int64), np.ones((rows, 1), np.int64)
        else:
            past_mask, mask = key_mask[:, :cached], key_mask[:, cached : cached + 1]
        return self._run(tokens, positions, mask, past_mask)
