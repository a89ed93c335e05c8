"""A test-only `DecoderRunner` over a blip_torch text decoder, so the NumPy generation loop
(`blip_core.generation.host`) can be checked against `blip_torch.generate` with no ONNX at all.

The prompt runs through the decoder's forward into a preallocated `KVCache`; each step through
`blip_torch.decoding.decoder_step`, the same kernels `blip_torch.generate` runs, so ids match exactly.
`record_decoding` captures the arguments a blip_torch model's `generate` hands to its decoding loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from blip_torch.cache import KVCache
from blip_torch.decoding import decoder_step


class TorchRunner:
    """`DecoderRunner` over `decoder` (a `BlipTextLMHeadModel` in eval mode) and its encoder states
    (B, S, H) float32 with an optional (B, S) mask; inputs and outputs are NumPy arrays."""

    def __init__(self, decoder: Any, encoder_hidden_states: torch.Tensor, encoder_attention_mask: Any) -> None:
        self.decoder = decoder
        self.encoder_hidden_states = encoder_hidden_states
        self.encoder_attention_mask = encoder_attention_mask
        self.vocab_size = int(decoder.config.vocab_size)
        self.cache: KVCache | None = None
        self.calls = {"start": 0, "expand": 0, "reorder": 0, "step": 0}

    def start(self, ids: np.ndarray, mask: np.ndarray | None, positions: np.ndarray, capacity: int) -> np.ndarray:
        self.calls["start"] += 1
        self.cache = KVCache(self.decoder.config.num_hidden_layers, capacity)
        with torch.no_grad():
            out = self.decoder(
                input_ids=torch.from_numpy(ids),
                attention_mask=None if mask is None else torch.from_numpy(mask),
                position_ids=torch.from_numpy(positions),
                encoder_hidden_states=self.encoder_hidden_states,
                encoder_attention_mask=self.encoder_attention_mask,
                past_key_values=self.cache,
                use_cache=True,
                return_dict=True,
            )
        return out.logits[:, -1].float().numpy()

    def expand(self, repeats: int) -> None:
        self.calls["expand"] += 1
        self.cache.expand(repeats)

    def reorder(self, order: np.ndarray) -> None:
        self.calls["reorder"] += 1
        self.cache.reorder(torch.from_numpy(np.ascontiguousarray(order, np.int64)))

    def step(self, tokens: np.ndarray, positions: np.ndarray, key_mask: np.ndarray | None) -> np.ndarray:
        self.calls["step"] += 1
        if key_mask is not None and key_mask.shape[1] != self.cache.length + 1:
            raise AssertionError(f"key mask of {key_mask.shape[1]} positions for a cache of {self.cache.length}")
        view = SimpleNamespace(
            decoder=self.decoder, cache=self.cache, encoder_attention_mask=self.encoder_attention_mask
        )
        mask = None if key_mask is None else torch.from_numpy(np.ascontiguousarray(key_mask))
        with torch.no_grad():
            logits = decoder_step(view, torch.from_numpy(tokens), torch.from_numpy(positions), mask)
        return logits[:, -1].float().numpy()


@contextlib.contextmanager
def record_decoding() -> Iterator[list[dict[str, Any]]]:
    """Within the block, every `generate` of blip_torch's captioning/VQA models appends the arguments of its
    decoding loop (decoder, rows, encoder states and mask, options, tokens) to the yielded list."""
    import blip_torch.captioning
    import blip_torch.question_answering

    calls: list[dict[str, Any]] = []
    modules = (blip_torch.captioning, blip_torch.question_answering)
    originals = [module.decode for module in modules]

    def recording(original):
        def decode(decoder, rows, states, mask, options, tokens, **extra):
            calls.append(
                {"decoder": decoder, "rows": rows, "states": states, "mask": mask, "options": options, "tokens": tokens}
            )
            return original(decoder, rows, states, mask, options, tokens, **extra)

        return decode

    try:
        for module, original in zip(modules, originals, strict=True):
            module.decode = recording(original)
        yield calls
    finally:
        for module, original in zip(modules, originals, strict=True):
            module.decode = original


def host_generate(call: dict[str, Any], **changes: Any) -> tuple[Any, TorchRunner]:
    """Run a recorded decoding call through the NumPy loop with a `TorchRunner`: (output, runner)."""
    import dataclasses

    from blip_core.generation.host import generate

    options = dataclasses.replace(call["options"], **changes) if changes else call["options"]
    decoder = call["decoder"]
    runner = TorchRunner(decoder, call["states"], call["mask"])
    text = decoder.config
    out = generate(runner, call["rows"], options, call["tokens"], text.max_position_embeddings, text.pad_token_id)
    return out, runner
