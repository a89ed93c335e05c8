"""Decoding for the captioning and VQA decoders: the state, greedy and sampling (beams: `beam_search.py`).

The rules (processor order, lengths, output padding, returned scores) are
`transformers`' 4.57 ones, so greedy ids match it; the mechanics are this
project's: prompts left-padded with per-row positions (each row gets its
single-row result), a preallocated self-attention cache, and cross-attention
keys/values computed once and shared by all rows of an image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from blip_core.generation.options import GenerationOptions, SpecialTokens
from blip_core.generation.prompts import left_pad
from blip_core.modeling.outputs import GenerateDecoderOnlyOutput
from blip_torch.cache import KVCache
from blip_torch.logits_processors import Step, process
from blip_torch.modeling_utils import additive_mask, attend


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
    if state.encoder_attention_mask is not None:
        cross_mask = additive_mask(state.encoder_attention_mask[:, None, None, :], dtype)
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
        key, value = cache.cross_entries[index]
        context = attend(query, key, value, cross_mask, 0.0, False, group=query.shape[0] // key.shape[0])[0]
        hidden = _residual_norm(context, hidden, layer.crossattention.output)
        inner = layer.intermediate.intermediate_act_fn(layer.intermediate.dense.forward(hidden))
        hidden = _norm(layer.output.dense.forward(inner) + hidden, layer.output.LayerNorm)
    cache.advance(ids.shape[1])
    predictions = decoder.cls.predictions
    transform = predictions.transform
    hidden = _norm(transform.transform_act_fn(transform.dense.forward(hidden)), transform.LayerNorm)
    return predictions.decoder.forward(hidden)


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
    out = decoder(
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


def random_generator(options: GenerationOptions, device: torch.device) -> torch.Generator | None:
    return torch.Generator(device).manual_seed(options.seed) if options.seed is not None else None


def out_of_time(options: GenerationOptions, began: float) -> bool:
    """`max_time` (seconds since decoding began) has passed: every row stops, as `transformers` does."""
    return options.max_time is not None and time.monotonic() - began > options.max_time


def greedy_or_sample(
    state: Decoding, prompt: torch.Tensor, logits: torch.Tensor, options: GenerationOptions, tokens: SpecialTokens
) -> GenerateDecoderOnlyOutput:
    """One token per row per step, picked by argmax or by sampling; finished rows get the pad id."""
    began = time.monotonic()
    repeats = options.num_return_sequences if options.do_sample else 1
    state.expand(repeats)
    prompt, logits = prompt.repeat_interleave(repeats, 0), logits.repeat_interleave(repeats, 0)
    width, steps = prompt.shape[1], int(state.max_new.max())
    history = None
    if options.needs_history:  # the whole rows, for the processors that read them
        history = torch.full((prompt.shape[0], width + steps), tokens.pad, dtype=prompt.dtype, device=prompt.device)
        history[:, :width] = prompt
    generator = random_generator(options, prompt.device)
    streamer = options.streamer
    if streamer is not None:
        streamer.put(prompt.cpu())
    unfinished = state.max_new > 0
    chosen, all_scores, all_logits = [], [], []
    for generated in range(steps):
        scores = process(logits, Step(state, generated, options, tokens, history, width + generated))
        if options.output_scores:
            all_scores.append(scores)
        if options.output_logits:
            all_logits.append(logits)
        picked = (
            torch.multinomial(scores.softmax(-1), 1, generator=generator)[:, 0]
            if options.do_sample
            else scores.argmax(-1)
        )
        picked = torch.where(unfinished, picked, torch.full_like(picked, tokens.pad))
        chosen.append(picked)
        if history is not None:
            history[:, width + generated] = picked
        if streamer is not None:
            streamer.put(picked.cpu())
        unfinished = unfinished & ~is_end(picked, tokens) & (generated + 1 < state.max_new)
        if not bool(unfinished.any()) or out_of_time(options, began):
            break
        state.mark(picked)
        logits = state.step(picked, generated + 1)
    if streamer is not None:
        streamer.end()
    sequences = torch.cat([prompt, torch.stack(chosen, 1)], 1) if chosen else prompt
    return GenerateDecoderOnlyOutput(
        sequences=sequences,
        scores=tuple(all_scores) if options.output_scores else None,
        logits=tuple(all_logits) if options.output_logits else None,
    )


def generate(
    decoder,
    rows: list[list[int]],
    encoder_hidden_states: torch.Tensor,
    encoder_attention_mask: torch.Tensor | None,
    options: GenerationOptions,
    tokens: SpecialTokens,
) -> torch.Tensor | GenerateDecoderOnlyOutput:
    """Decode one prompt row per image; ids begin with the start token, prompts come left-padded with pad id."""
    from blip_torch.beam_search import beam_search, group_beam_search

    if not rows:
        return empty_output(options, encoder_hidden_states.device)
    with torch.no_grad():
        state, prompt, logits = start(decoder, rows, encoder_hidden_states, encoder_attention_mask, options)
        loop = group_beam_search if options.is_group_beam else beam_search if options.is_beam else greedy_or_sample
        output = loop(state, prompt, logits, options, tokens)
    return output if options.return_dict_in_generate else output.sequences


def empty_output(options: GenerationOptions, device: torch.device) -> torch.Tensor | GenerateDecoderOnlyOutput:
    """A batch of no images: (0, 1) ids (and empty scores) without running the model."""
    from blip_core.modeling.outputs import empty_generate_output

    sequences = torch.zeros((0, 1), dtype=torch.long, device=device)
    if not options.return_dict_in_generate:
        return sequences
    return empty_generate_output(options, sequences, torch.zeros((0,), device=device))


def transition_scores(
    sequences: torch.Tensor,
    scores: tuple[torch.Tensor, ...],
    beam_indices: torch.Tensor | None,
    normalize_logits: bool,
    vocab_size: int,
) -> torch.Tensor:
    """`compute_transition_scores`: the score each generated token had when chosen, (rows, new tokens).

    Beam rows follow `beam_indices` (-1 past a hypothesis' end, where the score is 0).
    """
    if beam_indices is None:
        beam_indices = torch.arange(scores[0].shape[0], device=sequences.device)[:, None].expand(-1, len(scores))
    stacked = torch.stack(scores).reshape(len(scores), -1).transpose(0, 1)  # (N*V, steps)
    if normalize_logits:  # in float64: the same numbers on every CPU and in both trees, then the scores' dtype
        normalized = torch.log_softmax(stacked.double().reshape(-1, vocab_size, stacked.shape[-1]), dim=1)
        stacked = normalized.reshape(-1, stacked.shape[-1]).to(stacked.dtype)
    unused = beam_indices < 0
    length = int((~unused).sum(-1).max())
    unused = unused[:, :length]
    rows = beam_indices[:, :length].masked_fill(unused, 0)
    indices = sequences[:, sequences.shape[-1] - length :] + rows * vocab_size
    return stacked.gather(0, indices).masked_fill(unused, 0.0)


class GenerationMixin:
    """What `transformers`' GenerationMixin adds to the classes that generate, beyond `generate` itself."""

    config: object

    def compute_transition_scores(
        self,
        sequences: torch.Tensor,
        scores: tuple[torch.Tensor, ...],
        beam_indices: torch.Tensor | None = None,
        normalize_logits: bool = False,
    ) -> torch.Tensor:
        """The score of each generated token when it was chosen, (rows, new tokens) float32.

        `scores` (and `beam_indices` for beam search) come from `generate(..., output_scores=True,
        return_dict_in_generate=True)`; `normalize_logits` log-softmaxes them first.
        """
        vocab_size = self.config.get_text_config().vocab_size
        return transition_scores(sequences, scores, beam_indices, normalize_logits, vocab_size)
