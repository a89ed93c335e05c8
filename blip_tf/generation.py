"""Decoding for the captioning and VQA decoders: greedy, sampling, beam search. Twin of
`blip_torch/generation.py`, with the same rules and the same ids.

Forced difference: the loop runs inside one `tf.function(jit_compile=True)`
per (options, shapes), as a `tf.while_loop` over static shapes: the cache is
preallocated, finished steps are masked instead of skipped, and the outputs are
trimmed to their used length after the compiled call.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from blip_core.generation_config import GenerationConfig
from blip_core.outputs import GenerateOutput
from blip_core.prompts import left_pad
from blip_tf.cache import TFKVCache

NEG_INF = float("-inf")
NEVER = -1.0e9  # transformers' "never choose this beam" score


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

    def expand(self, repeats: int) -> None:
        """Give every image `repeats` rows (image-major)."""
        if repeats == 1:
            return
        self.cache.expand(repeats)
        for name in ("key_mask", "prompt_lengths", "max_new", "min_total", "seen"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, tf.repeat(value, repeats, axis=0))

    def mark(self, tokens: tf.Tensor) -> None:
        if self.seen is not None:
            self.seen = self.seen | tf.cast(tf.one_hot(tokens, self.seen.shape[-1]), tf.bool)

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


def start(
    decoder,
    ids,
    mask,
    positions,
    max_new,
    min_total,
    encoder_hidden_states,
    encoder_attention_mask,
    capacity: int,
    config: GenerationConfig,
):
    """Run the prompts once (one row per image) into a cache of `capacity` positions."""
    width = ids.shape[1]
    key_mask = tf.concat([mask, tf.ones((tf.shape(ids)[0], capacity - width), mask.dtype)], axis=1)
    seen = None
    if config.repetition_penalty != 1.0:
        hits = tf.one_hot(ids, decoder.config.vocab_size) * tf.cast(mask, tf.float32)[..., None]
        seen = tf.reduce_max(hits, axis=1) > 0
    cache = TFKVCache(decoder.config.num_hidden_layers, capacity)
    state = TFDecoding(
        decoder,
        cache,
        encoder_hidden_states,
        encoder_attention_mask,
        key_mask,
        tf.reduce_sum(mask, 1),
        max_new,
        min_total,
        seen,
    )
    out = decoder(
        input_ids=ids,
        attention_mask=key_mask,
        position_ids=positions,
        encoder_hidden_states=encoder_hidden_states,
        encoder_attention_mask=encoder_attention_mask,
        past_key_values=cache,
        use_cache=True,
        return_dict=True,
    )
    return state, ids, tf.cast(out.logits[:, -1], tf.float32)


# -- logits processors and warpers, in blip_core.generation_config.LOGITS_PROCESSOR_ORDER ---------


def repetition_penalty(scores: tf.Tensor, seen: tf.Tensor, penalty: float) -> tf.Tensor:
    penalized = tf.where(scores < 0, scores * penalty, scores / penalty)
    return tf.where(seen, penalized, scores)


def min_length(scores: tf.Tensor, lengths: tf.Tensor, min_total: tf.Tensor, eos_id: int) -> tf.Tensor:
    """Forbid EOS in rows shorter than their minimum length."""
    short = (lengths < min_total)[:, None] & (tf.range(scores.shape[-1]) == eos_id)[None, :]
    return tf.where(short, tf.constant(NEG_INF, scores.dtype), scores)


def top_k_filter(scores: tf.Tensor, top_k: int, keep: int) -> tf.Tensor:
    top_k = min(max(top_k, keep), scores.shape[-1])
    threshold = tf.math.top_k(scores, top_k).values[..., -1:]
    return tf.where(scores < threshold, tf.constant(NEG_INF, scores.dtype), scores)


def top_p_filter(scores: tf.Tensor, top_p: float, keep: int) -> tf.Tensor:
    order = tf.argsort(scores, axis=-1, direction="ASCENDING", stable=True)
    sorted_scores = tf.gather(scores, order, batch_dims=1)
    remove = tf.math.cumsum(tf.nn.softmax(sorted_scores, axis=-1), axis=-1) <= (1 - top_p)
    remove = remove & (tf.range(scores.shape[-1]) < scores.shape[-1] - keep)[None, :]
    remove = tf.gather(remove, tf.argsort(order, axis=-1), batch_dims=1)  # back to vocabulary order
    return tf.where(remove, tf.constant(NEG_INF, scores.dtype), scores)


def process(scores: tf.Tensor, state: TFDecoding, generated: Any, config: GenerationConfig, eos_id: int) -> tf.Tensor:
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


def _set_column(values: tf.Tensor, column: tf.Tensor, new: tf.Tensor) -> tf.Tensor:
    """values (..., T) with column `column` replaced by new (...)."""
    return tf.where(tf.range(values.shape[-1]) == column, new[..., None], values)


# -- decoding loops -------------------------------------------------------------------------


def greedy_or_sample(
    state: TFDecoding,
    prompt: tf.Tensor,
    logits: tf.Tensor,
    config: GenerationConfig,
    eos_id: int,
    pad_id: int,
    seed: tf.Tensor,
) -> dict[str, tf.Tensor]:
    """One token per row per step, picked by argmax or by sampling; finished rows get `pad_id`."""
    repeats = config.num_return_sequences if config.do_sample else 1
    state.expand(repeats)
    prompt, logits = tf.repeat(prompt, repeats, axis=0), tf.repeat(logits, repeats, axis=0)
    steps = state.cache.capacity - prompt.shape[1]

    def body(generated, logits, chosen, unfinished, carried):
        state.restore(carried)
        scores = process(logits, state, generated, config, eos_id)
        if config.do_sample:
            tokens = tf.random.stateless_categorical(scores, 1, seed=tf.stack([seed, generated]), dtype=tf.int32)[:, 0]
        else:
            tokens = tf.argmax(scores, axis=-1, output_type=tf.int32)
        tokens = tf.where(unfinished, tokens, pad_id)
        chosen = _set_column(chosen, generated, tokens)
        unfinished = unfinished & (tokens != eos_id) & (generated + 1 < state.max_new)
        state.mark(tokens)
        before = state.carry()  # both branches start from here (tf.cond traces them one after the other)

        def advance():
            state.restore(before)
            return state.step(tokens, generated + 1), state.carry()

        logits, carried = tf.cond(tf.reduce_any(unfinished), advance, lambda: (logits, before))
        return generated + 1, logits, chosen, unfinished, carried

    chosen = tf.fill((tf.shape(prompt)[0], steps), tf.constant(pad_id, tf.int32))
    loop = (tf.constant(0), logits, chosen, state.max_new > 0, state.carry())
    generated, _, chosen, _, _ = tf.while_loop(
        lambda generated, logits, chosen, unfinished, carried: (generated < steps) & tf.reduce_any(unfinished),
        body,
        loop,
        maximum_iterations=steps,
    )
    return {"prompt": prompt, "chosen": chosen, "generated": generated}


def _gather(values: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """values (B, K, ...) gathered along beams by index (B, J) -> (B, J, ...)."""
    return tf.gather(values, index, batch_dims=1)


def beam_search(
    state: TFDecoding,
    prompt: tf.Tensor,
    logits: tf.Tensor,
    config: GenerationConfig,
    eos_id: int,
    pad_id: int,
    seed: tf.Tensor,
) -> dict[str, tf.Tensor]:
    """`transformers`' vectorised beam search (optionally sampling the candidates)."""
    batch, beams, lp = tf.shape(prompt)[0], config.num_beams, config.length_penalty
    state.expand(beams)
    logits = tf.repeat(logits, beams, axis=0)
    width, vocab, keep = prompt.shape[1], logits.shape[-1], 2 * beams
    budget = tf.reshape(state.max_new, (-1, beams))[:, 0]  # (B,) new-token budget per image
    total = state.cache.capacity
    running = tf.concat(
        [tf.repeat(prompt[:, None], beams, axis=1), tf.fill((batch, beams, total - width), eos_id)], axis=2
    )
    running_scores = tf.tile(tf.constant([[0.0] + [NEVER] * (beams - 1)]), (batch, 1))
    top_beams = tf.range(keep) < beams
    offsets = tf.range(batch)[:, None] * beams
    best_length = tf.cast(budget[:, None], tf.float32) if config.early_stopping == "never" and lp > 0 else None

    def body(
        generated,
        logits,
        running,
        running_scores,
        finished,
        finished_scores,
        finished_lengths,
        is_finished,
        improvable,
        done,
        carried,
    ):
        state.restore(carried)
        cursor = width + generated
        scores = process(tf.nn.log_softmax(logits, axis=-1), state, generated, config, eos_id)
        totals = tf.reshape(
            tf.reshape(scores, (batch, beams, vocab)) + running_scores[:, :, None], (batch, beams * vocab)
        )
        if config.do_sample:  # sampling without replacement: Gumbel top-k
            noise = -tf.math.log(
                -tf.math.log(tf.random.stateless_uniform(totals.shape, tf.stack([seed, generated]), 1e-20, 1.0))
            )
            index = tf.math.top_k(tf.nn.log_softmax(totals, axis=-1) + noise, keep).indices
            top = tf.gather(totals, index, batch_dims=1)
            order = tf.argsort(top, axis=-1, direction="DESCENDING", stable=True)
            top, index = tf.gather(top, order, batch_dims=1), tf.gather(index, order, batch_dims=1)
        else:
            top, index = tf.math.top_k(totals, keep)
        source, tokens = index // vocab, index % vocab
        candidates = _set_column(_gather(running, source), cursor, tokens)
        hits = (tokens == eos_id) | (generated + 1 >= budget[:, None])
        # The best candidates that go on.
        going = top + tf.cast(hits, tf.float32) * NEVER
        pick = tf.math.top_k(going, beams).indices
        running, running_scores, parents = _gather(candidates, pick), _gather(going, pick), _gather(source, pick)
        # The best finished hypotheses so far.
        just_done = hits & top_beams
        done_scores = top / tf.cast(generated + 1, tf.float32) ** lp
        full = tf.reduce_all(is_finished, axis=-1, keepdims=True) & (config.early_stopping is True)
        done_scores = done_scores + tf.cast(full | ~improvable | ~just_done, tf.float32) * NEVER
        merged = tf.math.top_k(tf.concat([finished_scores, done_scores], 1), beams).indices
        finished = _gather(tf.concat([finished, candidates], 1), merged)
        finished_scores = _gather(tf.concat([finished_scores, done_scores], 1), merged)
        lengths = tf.fill(tf.shape(done_scores), generated + 1)
        finished_lengths = _gather(tf.concat([finished_lengths, lengths], 1), merged)
        is_finished = _gather(tf.concat([is_finished, just_done], 1), merged)
        # Can anything still improve?
        horizon = best_length if best_length is not None else tf.cast(generated + 1, tf.float32)
        best_running = running_scores[:, :1] / horizon**lp
        worst_finished = tf.where(is_finished, tf.reduce_min(finished_scores, axis=1, keepdims=True), NEVER)
        improvable = improvable & tf.reduce_any(best_running > worst_finished, axis=-1, keepdims=True)
        open_beams = ~(tf.reduce_all(is_finished) & (config.early_stopping is True))
        done = ~(tf.reduce_any(improvable) & open_beams & ~tf.reduce_all(hits))

        before = state.carry()  # both branches start from here (tf.cond traces them one after the other)

        def advance():
            state.restore(before)
            order = tf.reshape(parents + offsets, (-1,))
            state.cache.reorder(order)
            if state.seen is not None:
                state.seen = tf.gather(state.seen, order)
            chosen = tf.reshape(tf.gather(running, cursor, axis=2), (-1,))
            state.mark(chosen)
            return state.step(chosen, generated + 1), state.carry()

        logits, carried = tf.cond(done, lambda: (logits, before), advance)
        return (
            generated + 1,
            logits,
            running,
            running_scores,
            finished,
            finished_scores,
            finished_lengths,
            is_finished,
            improvable,
            done,
            carried,
        )

    steps = total - width
    loop = (
        tf.constant(0),
        logits,
        running,
        running_scores,
        running,
        tf.fill((batch, beams), NEVER),
        tf.zeros((batch, beams), tf.int32),
        tf.zeros((batch, beams), tf.bool),
        tf.ones((batch, 1), tf.bool),
        tf.constant(False),
        state.carry(),
    )
    out = tf.while_loop(lambda *values: (values[0] < steps) & ~values[9], body, loop, maximum_iterations=steps)
    count = config.num_return_sequences
    return {
        "finished": out[4][:, :count],
        "finished_scores": out[5][:, :count],
        "finished_lengths": out[6][:, :count],
    }


def _compiled(decoder, config: GenerationConfig, capacity: int):
    """One XLA-compiled decoding function per (decoder, options, capacity); shapes retrace it."""
    statics = (
        config.is_beam,
        config.do_sample,
        config.num_beams,
        config.num_return_sequences,
        config.temperature,
        config.top_k,
        config.top_p,
        config.repetition_penalty,
        config.length_penalty,
        config.early_stopping,
        capacity,
    )
    cache = decoder.__dict__.setdefault("_blip_generate_functions", {})
    if statics not in cache:
        eos_id, pad_id = decoder.config.sep_token_id, decoder.config.pad_token_id
        loop = beam_search if config.is_beam else greedy_or_sample

        @tf.function(jit_compile=True, reduce_retracing=False)
        def run(encoder_hidden_states, encoder_attention_mask, ids, mask, positions, max_new, min_total, seed):
            state, prompt, logits = start(
                decoder,
                ids,
                mask,
                positions,
                max_new,
                min_total,
                encoder_hidden_states,
                encoder_attention_mask,
                capacity,
                config,
            )
            return loop(state, prompt, logits, config, eos_id, pad_id, seed)

        cache[statics] = run
    return cache[statics]


def assemble(out: dict[str, tf.Tensor], config: GenerationConfig, width: int) -> tuple[tf.Tensor, tf.Tensor | None]:
    """(sequences, beam scores) from the compiled loop's static buffers, cut to their used length.

    TF ops only, so serving graphs use it too (outside XLA: the lengths are data-dependent).
    """
    if config.is_beam:
        finished = out["finished"]
        used = width + tf.reduce_max(out["finished_lengths"])
        sequences = tf.reshape(finished[:, :, :used], (-1, used))
        return sequences, tf.reshape(out["finished_scores"], (-1,))
    return tf.concat([out["prompt"], out["chosen"][:, : out["generated"]]], axis=1), None


def decode_prepared(
    decoder,
    ids,
    mask,
    positions,
    max_new,
    min_total,
    encoder_hidden_states,
    encoder_attention_mask,
    config: GenerationConfig,
    capacity: int,
    seed,
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Run the compiled loop on prepared (left-padded) prompt tensors; works eagerly and inside graphs."""
    run = _compiled(decoder, config, capacity)
    out = run(
        encoder_hidden_states, tf.cast(encoder_attention_mask, tf.int32), ids, mask, positions, max_new, min_total, seed
    )
    return assemble(out, config, ids.shape[1])


def generate(
    decoder,
    rows: list[list[int]],
    encoder_hidden_states: tf.Tensor,
    encoder_attention_mask: tf.Tensor | None,
    config: GenerationConfig,
) -> tf.Tensor | GenerateOutput:
    """Decode one prompt row per image; int32 ids begin with BOS, prompts come left-padded with pad id."""
    ids, mask, positions = left_pad(rows, decoder.config.pad_token_id)
    limits = [config.length_limits(len(row), decoder.config.max_position_embeddings) for row in rows]
    max_new = np.array([limit[0] for limit in limits], np.int32)
    min_total = np.array([limit[1] for limit in limits], np.int32)
    if encoder_attention_mask is None:
        encoder_attention_mask = tf.ones(tf.shape(encoder_hidden_states)[:2], tf.int32)
    seed = config.seed if config.seed is not None else random.randrange(2**31)
    sequences, sequences_scores = decode_prepared(
        decoder,
        tf.constant(ids, tf.int32),
        tf.constant(mask, tf.int32),
        tf.constant(positions, tf.int32),
        tf.constant(max_new),
        tf.constant(min_total),
        encoder_hidden_states,
        encoder_attention_mask,
        config,
        ids.shape[1] + int(max_new.max()),
        tf.constant(seed, tf.int32),
    )
    if config.return_dict_in_generate:
        return GenerateOutput(sequences=sequences, sequences_scores=sequences_scores)
    return sequences


def export_for_serving(model: Any, export_dir: str, max_new_tokens: int = 20, num_beams: int = 1) -> str:
    """Write a SavedModel whose `serving_default` maps pixels (and, for VQA, question ids) to token ids.

    Captioning: `pixel_values` float32 (B, 3, H, W) -> `sequences` int32. Question answering adds
    `input_ids` and `attention_mask` int32 (B, T). Ids begin with BOS, as `generate` returns them.
    """
    config = GenerationConfig.from_kwargs(max_new_tokens=max_new_tokens, num_beams=num_beams)
    decoder, text = model.text_decoder, model.config.text_config
    size = model.config.vision_config.image_size
    pixels_spec = tf.TensorSpec((None, 3, size, size), tf.float32, name="pixel_values")
    ids_spec = tf.TensorSpec((None, None), tf.int32, name="input_ids")
    mask_spec = tf.TensorSpec((None, None), tf.int32, name="attention_mask")

    def decode(states, states_mask):
        batch = tf.shape(states)[0]
        ids = tf.fill((batch, 1), tf.constant(text.bos_token_id, tf.int32))
        limit = min(max_new_tokens, text.max_position_embeddings - 1)
        sequences, _ = decode_prepared(
            decoder,
            ids,
            tf.ones_like(ids),
            tf.zeros_like(ids),
            tf.fill((batch,), limit),
            tf.zeros((batch,), tf.int32),
            states,
            states_mask,
            config,
            1 + limit,
            tf.constant(0, tf.int32),
        )
        return {"sequences": sequences}

    module = tf.Module()
    # Track the variables themselves (not the Keras model, whose own export would trace `call`).
    module.model_variables = [variable.value for variable in model.weights]
    if hasattr(model, "text_encoder"):  # question answering

        @tf.function(input_signature=[pixels_spec, ids_spec, mask_spec], autograph=False)
        def serve(pixel_values, input_ids, attention_mask):
            states = model._question_embeds(input_ids, pixel_values, attention_mask, False)[1]
            return decode(states, attention_mask)

    else:

        @tf.function(input_signature=[pixels_spec], autograph=False)
        def serve(pixel_values):
            states = model.vision_model(pixel_values, return_dict=True).last_hidden_state
            return decode(states, tf.ones(tf.shape(states)[:2], tf.int32))

    module.serve = serve
    tf.saved_model.save(module, export_dir, signatures={"serving_default": serve})
    return export_dir
