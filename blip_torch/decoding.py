"""The decoding state and one step of the captioning and VQA decoders: `Decoding` (cache, per-row masks and
limits), `start` (prompts left-padded and run once into a preallocated cache), `decoder_step` (one token
per row without module dispatch) and the end-token test. The loops that drive it are in `generation.py`
and `beam_search.py`. Twin of `blip_tf/decoding.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from blip_core.generation.options import GenerationOptions, SpecialTokens
from blip_core.generation.prompts import left_pad
from blip_torch.cache import KVCache
from blip_torch.compiled_decoding import eager_call
from blip_torch.layers import additive_mask, attend


@dataclass
class Decoding:
    """Everything a step needs: the decoder, its cache, and per-row masks and limits (N rows)."""

    decoder: torch.nn.Module
    cache: KVCache
    encoder_hidden_states: torch.Tensor
    encoder_attention_mask: torch.Tensor | None
    key_mask: torch.Tensor | None  # (N, capacity) 0/1; None when no prompt is padded
    prompt_lengths: torch.Tensor  # (N,) real prompt tokens, BOS included
    max_new: torch.Tensor  # (N,) new-token budget
    min_total: torch.Tensor  # (N,) minimum total length before EOS is allowed
    seen: torch.Tensor | None  # (N, V) tokens present so far, for the repetition penalty
    prompt: torch.Tensor  # (N, P) the left-padded prompts (the encoder n-gram ban reads them)
    prompt_tokens: torch.Tensor | None  # (N, V) tokens of the prompt, for the encoder repetition penalty
    compiled: Callable | None = None  # (state, ids, positions) -> logits: the step under torch.compile

    def expand(self, repeats: int) -> None:
        """Give every image `repeats` rows (image-major)."""
        if repeats == 1:
            return
        self.cache.expand(repeats)
        for name in ("key_mask", "prompt_lengths", "max_new", "min_total", "seen", "prompt", "prompt_tokens"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.repeat_interleave(repeats, 0))

    def mark(self, tokens: torch.Tensor) -> None:
        if self.seen is not None:
            self.seen.scatter_(1, tokens[:, None], True)

    def reorder(self, order: torch.Tensor) -> None:
        """Rows take the cache and seen tokens of rows `order` (beams of the same image)."""
        self.cache.reorder(order)
        if self.seen is not None:
            self.seen = self.seen.index_select(0, order)

    def step(self, tokens: torch.Tensor, generated: int) -> torch.Tensor:
        """Feed one new token per row; the float32 logits of the next one (N, V)."""
        length = self.cache.length + 1
        key_mask = self.key_mask[:, :length] if self.key_mask is not None else None
        positions = (self.prompt_lengths + generated - 1)[:, None]
        if not self.decoder.training:
            if self.compiled is not None:  # compiled_decoding.py
                return self.compiled(self, tokens[:, None], positions)[:, -1].float()
            return decoder_step(self, tokens[:, None], positions, key_mask)[:, -1].float()
        out = self.decoder(
            input_ids=tokens[:, None],
            attention_mask=key_mask,
            position_ids=positions,
            encoder_hidden_states=self.encoder_hidden_states,
            encoder_attention_mask=self.encoder_attention_mask,
            past_key_values=self.cache,
            use_cache=True,
            return_dict=True,
        )
        return out.logits[:, -1].float()


def decoder_step(
    state: Decoding, ids: torch.Tensor, positions: torch.Tensor, key_mask: torch.Tensor | None
) -> torch.Tensor:
    """The decoder's forward for one new token per row (ids (N, 1)) without module dispatch: logits (N, 1, V).

    The same operations as `BlipTextLMHeadModel.forward` in eval mode with the cross-attention
    keys/values already cached; decoding is a few hundred small operations per token, and the
    per-module overhead (hooks, argument handling, dropout calls) would cost as much as the
    arithmetic of the decoder's matrix-vector products.
    """
    if ids.shape[1] != 1:
        raise ValueError(f"decoder_step feeds one token per row, got {ids.shape[1]}")
    decoder, cache = state.decoder, state.cache
    bert = decoder.bert
    embeddings = bert.embeddings
    dtype = embeddings.word_embeddings.weight.dtype
    hidden = embeddings.word_embeddings.weight[ids] + embeddings.position_embeddings.weight[positions]
    hidden = _norm(hidden, embeddings.LayerNorm)
    self_mask = additive_mask(key_mask[:, None, None, :], dtype) if key_mask is not None else None
    cross_mask = None
    if state.encoder_attention_mask is not None:  # in the dtype the image keys/values take (`_cross_entries`)
        cross_dtype = torch.float32 if hidden.is_cpu else dtype
        cross_mask = additive_mask(state.encoder_attention_mask[:, None, None, :], cross_dtype)
    for index, layer in enumerate(bert.encoder.layer):
        attention = layer.attention.self
        query = attention._heads(attention.query.forward(hidden))
        key = attention._heads(attention.key.forward(hidden))
        value = attention._heads(attention.value.forward(hidden))
        key, value = cache.update_self(index, key, value)
        context = attend(query, key, value, self_mask, 0.0, False)[0]
        hidden = _residual_norm(context, hidden, layer.attention.output)
        cross = layer.crossattention.self
        query = cross._heads(cross.query.forward(hidden))
        key, value = _cross_entries(cache, index)
        group = query.shape[0] // key.shape[0]
        context = attend(query.to(key.dtype), key, value, cross_mask, 0.0, False, group=group)[0].to(dtype)
        hidden = _residual_norm(context, hidden, layer.crossattention.output)
        inner = layer.intermediate.intermediate_act_fn(layer.intermediate.dense.forward(hidden))
        hidden = _norm(layer.output.dense.forward(inner) + hidden, layer.output.LayerNorm)
    cache.advance(ids.shape[1])
    predictions = decoder.cls.predictions
    transform = predictions.transform
    hidden = _norm(transform.transform_act_fn(transform.dense.forward(hidden)), transform.LayerNorm)
    return predictions.decoder.forward(hidden)


def _cross_entries(cache, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The image keys/values of a layer, kept in float32 on CPUs from the first step on: one query row against
    hundreds of image tokens runs ~6x slower in bfloat16 there (PyTorch's flash-attention kernel), and float32
    is also the more exact (the cache is made once per call; twice the memory of the low-precision one)."""
    key, value = cache.cross_entries[index]
    if key.dtype != torch.float32 and key.is_cpu:
        key, value = key.float(), value.float()
        cache.cross_entries[index] = (key, value)
    return key, value


def _norm(hidden: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    return torch.nn.functional.layer_norm(hidden, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _residual_norm(context: torch.Tensor, hidden: torch.Tensor, output: torch.nn.Module) -> torch.Tensor:
    """Heads (N, H, T, D) merged, projected, added to the residual and normalised (BlipTextSelfOutput)."""
    batch, heads, length, size = context.shape
    merged = context.transpose(1, 2).reshape(batch, length, heads * size)
    return _norm(output.dense.forward(merged) + hidden, output.LayerNorm)


def _token_mask(ids: torch.Tensor, mask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(N, V) bool: the tokens each row holds (where `mask` is 1)."""
    found = torch.zeros(ids.shape[0], vocab_size, dtype=torch.bool, device=ids.device)
    return found.scatter_(1, ids, mask.bool())


def start(decoder, rows: list[list[int]], encoder_hidden_states, encoder_attention_mask, options: GenerationOptions):
    """Left-pad the prompts, size the cache and run the prompts once (one row per image).

    Returns the decoding state, the padded prompt ids (B, P) and the first logits (B, V).
    Raises `ValueError` when a prompt leaves no room for a new token or exceeds `max_length`.
    """
    text = decoder.config
    device = encoder_hidden_states.device
    limits = [options.length_limits(len(row), text.max_position_embeddings) for row in rows]
    ids, mask, positions = (torch.from_numpy(a).to(device) for a in left_pad(rows, text.pad_token_id))
    max_new = torch.tensor([limit[0] for limit in limits], device=device)
    min_total = torch.tensor([limit[1] for limit in limits], device=device)
    capacity = ids.shape[1] + int(max_new.max())
    padded = bool((mask == 0).any())
    key_mask = None
    if padded:
        key_mask = torch.ones(len(rows), capacity, dtype=torch.long, device=device)
        key_mask[:, : ids.shape[1]] = mask
    seen = _token_mask(ids, mask, text.vocab_size) if options.repetition_penalty != 1.0 else None
    prompt_tokens = _token_mask(ids, mask, text.vocab_size) if options.encoder_repetition_penalty != 1.0 else None
    cache = KVCache(text.num_hidden_layers, capacity)
    state = Decoding(
        decoder,
        cache,
        encoder_hidden_states,
        encoder_attention_mask,
        key_mask,
        mask.sum(1),
        max_new,
        min_total,
        seen,
        ids,
        prompt_tokens,
    )
    out = eager_call(decoder)(  # the prompt pass: eager even when the decoder was compiled (compiled_decoding.py)
        input_ids=ids,
        attention_mask=mask if padded else None,
        position_ids=positions,
        encoder_hidden_states=encoder_hidden_states,
        encoder_attention_mask=encoder_attention_mask,
        past_key_values=cache,
        use_cache=True,
        return_dict=True,
    )
    return state, ids, out.logits[:, -1].float()


def is_end(tokens: torch.Tensor, tokens_ids: SpecialTokens) -> torch.Tensor:
    """Whether each token is one of the end tokens."""
    if len(tokens_ids.eos) == 1:
        return tokens == tokens_ids.eos[0]
    return torch.isin(tokens, torch.tensor(tokens_ids.eos, device=tokens.device))
