"""Decoding for the captioning and VQA decoders: greedy, sampling, beam search.

The rules (processor order, beam bookkeeping, length penalty, early
stopping, output padding) are `transformers`' 4.57 ones, so greedy and beam
ids match it; the mechanics are this project's: prompts left-padded with
per-row positions (each row gets its single-row result), a preallocated
self-attention cache, and cross-attention keys/values computed once and
shared by all rows of an image (beam reorders copy only the self cache).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from blip_core.generation_config import GenerationConfig
from blip_core.outputs import GenerateOutput
from blip_core.prompts import left_pad
from blip_torch.cache import KVCache
from blip_torch.modeling_utils import additive_mask, attend

NEG_INF = float("-inf")
NEVER = -1.0e9  # transformers' "never choose this beam" score


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

    def expand(self, repeats: int) -> None:
        """Give every image `repeats` rows (image-major)."""
        if repeats == 1:
            return
        self.cache.expand(repeats)
        for name in ("key_mask", "prompt_lengths", "max_new", "min_total", "seen"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.repeat_interleave(repeats, 0))

    def mark(self, tokens: torch.Tensor) -> None:
        if self.seen is not None:
            self.seen.scatter_(1, tokens[:, None], True)

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


def start(decoder, rows: list[list[int]], encoder_hidden_states, encoder_attention_mask, config: GenerationConfig):
    """Left-pad the prompts, size the cache and run the prompts once (one row per image).

    Returns the decoding state, the padded prompt ids (B, P) and the first logits (B, V).
    """
    device = encoder_hidden_states.device
    ids, mask, positions = (torch.from_numpy(a).to(device) for a in left_pad(rows, decoder.config.pad_token_id))
    limits = [config.length_limits(len(row), decoder.config.max_position_embeddings) for row in rows]
    max_new = torch.tensor([limit[0] for limit in limits], device=device)
    min_total = torch.tensor([limit[1] for limit in limits], device=device)
    capacity = ids.shape[1] + int(max_new.max())
    padded = bool((mask == 0).any())
    key_mask = None
    if padded:
        key_mask = torch.ones(len(rows), capacity, dtype=torch.long, device=device)
        key_mask[:, : ids.shape[1]] = mask
    seen = None
    if config.repetition_penalty != 1.0:
        seen = torch.zeros(len(rows), decoder.config.vocab_size, dtype=torch.bool, device=device)
        seen.scatter_(1, ids, mask.bool())
    cache = KVCache(decoder.config.num_hidden_layers, capacity)
    state = Decoding(
        decoder, cache, encoder_hidden_states, encoder_attention_mask, key_mask, mask.sum(1), max_new, min_total, seen
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


# -- logits processors and warpers, in blip_core.generation_config.LOGITS_PROCESSOR_ORDER ---------


def repetition_penalty(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    penalized = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(seen, penalized, scores)


def min_length(scores: torch.Tensor, lengths: torch.Tensor, min_total: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Forbid EOS in rows shorter than their minimum length."""
    short = lengths < min_total
    if not bool(short.any()):
        return scores
    scores = scores.clone()
    scores[short, eos_id] = NEG_INF
    return scores


def top_k_filter(scores: torch.Tensor, top_k: int, keep: int) -> torch.Tensor:
    top_k = min(max(top_k, keep), scores.shape[-1])
    threshold = torch.topk(scores, top_k)[0][..., -1, None]
    return scores.masked_fill(scores < threshold, NEG_INF)


def top_p_filter(scores: torch.Tensor, top_p: float, keep: int) -> torch.Tensor:
    sorted_scores, order = torch.sort(scores, descending=False)
    remove = sorted_scores.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
    remove[..., -keep:] = False
    return scores.masked_fill(remove.scatter(1, order, remove), NEG_INF)


def process(
    scores: torch.Tensor, state: Decoding, generated: int, config: GenerationConfig, eos_id: int
) -> torch.Tensor:
    if config.repetition_penalty != 1.0:
        scores = repetition_penalty(scores, state.seen, config.repetition_penalty)
    scores = min_length(scores, state.prompt_lengths + generated, state.min_total, eos_id)
    if config.do_sample:
        keep = 2 if config.is_beam else 1
        if config.temperature != 1.0:
            scores = scores / config.temperature
        if config.top_k:
            scores = top_k_filter(scores, config.top_k, keep)
        if config.top_p < 1.0:
            scores = top_p_filter(scores, config.top_p, keep)
    return scores


def _generator(config: GenerationConfig, device: torch.device) -> torch.Generator | None:
    return torch.Generator(device).manual_seed(config.seed) if config.seed is not None else None


# -- decoding loops -------------------------------------------------------------------------


def greedy_or_sample(
    state: Decoding, prompt: torch.Tensor, logits: torch.Tensor, config: GenerationConfig, eos_id: int, pad_id: int
) -> GenerateOutput:
    """One token per row per step, picked by argmax or by sampling; finished rows get `pad_id`."""
    repeats = config.num_return_sequences if config.do_sample else 1
    state.expand(repeats)
    prompt, logits = prompt.repeat_interleave(repeats, 0), logits.repeat_interleave(repeats, 0)
    generator = _generator(config, prompt.device)
    unfinished = state.max_new > 0
    chosen, all_scores = [], []
    for generated in range(int(state.max_new.max())):
        scores = process(logits, state, generated, config, eos_id)
        if config.output_scores:
            all_scores.append(scores)
        tokens = (
            torch.multinomial(scores.softmax(-1), 1, generator=generator)[:, 0]
            if config.do_sample
            else scores.argmax(-1)
        )
        tokens = torch.where(unfinished, tokens, torch.full_like(tokens, pad_id))
        chosen.append(tokens)
        unfinished = unfinished & (tokens != eos_id) & (generated + 1 < state.max_new)
        if not bool(unfinished.any()):
            break
        state.mark(tokens)
        logits = state.step(tokens, generated + 1)
    sequences = torch.cat([prompt, torch.stack(chosen, 1)], 1) if chosen else prompt
    return GenerateOutput(sequences=sequences, scores=tuple(all_scores) if config.output_scores else None)


def _gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (B, K, ...) gathered along beams by index (B, J) -> (B, J, ...)."""
    shape = index.shape + values.shape[2:]
    return values.gather(1, index.view(*index.shape, *([1] * (values.dim() - 2))).expand(shape))


def beam_search(
    state: Decoding, prompt: torch.Tensor, logits: torch.Tensor, config: GenerationConfig, eos_id: int, pad_id: int
) -> GenerateOutput:
    """`transformers`' vectorised beam search (optionally sampling the candidates)."""
    batch, beams, lp = prompt.shape[0], config.num_beams, config.length_penalty
    state.expand(beams)
    logits = logits.repeat_interleave(beams, 0)
    device, width, vocab = prompt.device, prompt.shape[1], logits.shape[-1]
    keep = 2 * beams
    budget = state.max_new.view(batch, beams)[:, 0]  # (B,) new-token budget per image
    total = width + int(budget.max())
    running = torch.full((batch, beams, total), eos_id, dtype=torch.long, device=device)  # transformers fills with EOS
    running[:, :, :width] = prompt[:, None]
    finished = running.clone()
    running_scores = torch.zeros(batch, beams, device=device)
    running_scores[:, 1:] = NEVER
    finished_scores = torch.full((batch, beams), NEVER, device=device)
    finished_lengths = torch.zeros(batch, beams, dtype=torch.long, device=device)
    is_finished = torch.zeros(batch, beams, dtype=torch.bool, device=device)
    improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)
    top_beams = torch.arange(keep, device=device) < beams
    offsets = torch.arange(batch, device=device)[:, None] * beams
    generator, all_scores = _generator(config, device), []
    for generated in range(int(budget.max())):
        cursor = width + generated
        scores = process(torch.log_softmax(logits, -1), state, generated, config, eos_id)
        if config.output_scores:
            all_scores.append(scores)
        totals = (scores.view(batch, beams, vocab) + running_scores[:, :, None]).view(batch, beams * vocab)
        if config.do_sample:
            index = torch.multinomial(totals.softmax(-1), keep, generator=generator)
            top = totals.gather(1, index)
        else:
            top, index = torch.topk(totals, keep)
        source, tokens = index // vocab, index % vocab
        candidates = _gather(running, source)
        candidates[:, :, cursor] = tokens
        hits = (tokens == eos_id) | (generated + 1 >= budget[:, None])
        # The best candidates that go on.
        going = top + hits.float() * NEVER
        pick = torch.topk(going, beams)[1]
        running, running_scores, parents = _gather(candidates, pick), _gather(going, pick), _gather(source, pick)
        # The best finished hypotheses so far.
        done = hits & top_beams
        done_scores = top / float(generated + 1) ** lp
        full = is_finished.all(-1, keepdim=True) & (config.early_stopping is True)
        done_scores = done_scores + (full | ~improvable | ~done).float() * NEVER
        merged = torch.topk(torch.cat([finished_scores, done_scores], 1), beams)[1]
        finished = _gather(torch.cat([finished, candidates], 1), merged)
        finished_scores = _gather(torch.cat([finished_scores, done_scores], 1), merged)
        finished_lengths = _gather(
            torch.cat([finished_lengths, torch.full_like(done_scores, generated + 1, dtype=torch.long)], 1), merged
        )
        is_finished = _gather(torch.cat([is_finished, done], 1), merged)
        # Can anything still improve?
        horizon = budget[:, None].float() if config.early_stopping == "never" and lp > 0 else float(generated + 1)
        best_running = running_scores[:, :1] / horizon**lp
        worst_finished = torch.where(
            is_finished, finished_scores.min(1, keepdim=True)[0], torch.full_like(finished_scores, NEVER)
        )
        improvable = improvable & (best_running > worst_finished).any(-1, keepdim=True)
        open_beams = not (bool(is_finished.all()) and config.early_stopping is True)
        if not (bool(improvable.any()) and open_beams and not bool(hits.all())):
            break
        order = (parents + offsets).view(-1)
        state.cache.reorder(order)
        if state.seen is not None:
            state.seen = state.seen.index_select(0, order)
        tokens = running[:, :, cursor].reshape(-1)
        state.mark(tokens)
        logits = state.step(tokens, generated + 1)
    count = config.num_return_sequences
    length = width + int(finished_lengths[:, :count].max())
    sequences = finished[:, :count, :length].reshape(batch * count, length)
    return GenerateOutput(
        sequences=sequences,
        scores=tuple(all_scores) if config.output_scores else None,
        sequences_scores=finished_scores[:, :count].reshape(-1),
    )


def generate(
    decoder,
    rows: list[list[int]],
    encoder_hidden_states: torch.Tensor,
    encoder_attention_mask: torch.Tensor | None,
    config: GenerationConfig,
) -> torch.Tensor | GenerateOutput:
    """Decode one prompt row per image; ids begin with BOS, prompts come left-padded with pad id."""
    eos_id, pad_id = decoder.config.sep_token_id, decoder.config.pad_token_id
    with torch.no_grad():
        state, prompt, logits = start(decoder, rows, encoder_hidden_states, encoder_attention_mask, config)
        loop = beam_search if config.is_beam else greedy_or_sample
        output = loop(state, prompt, logits, config, eos_id, pad_id)
    return output if config.return_dict_in_generate else output.sequences
