"""Decoding for the captioning and VQA decoders: the state, greedy and sampling (beams: `beam_search.py`).
Twin of `blip_torch/generation.py`, with the same rules and the same ids.

Forced difference: the loop runs inside one `tf.function(jit_compile=True)`
per (options, shapes), as a `tf.while_loop` over static shapes: the cache and
the output buffers are preallocated, finished steps are masked instead of
skipped, and the outputs are trimmed to their used length after the compiled call.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from blip_core.generation.options import GenerationOptions, SpecialTokens
from blip_core.generation.prompts import left_pad
from blip_core.modeling.function_cache import FunctionCache, cache_on
from blip_core.modeling.outputs import GenerateBeamDecoderOnlyOutput, GenerateDecoderOnlyOutput, empty_generate_output
from blip_tf.cache import TFKVCache
from blip_tf.logits_processors import TFStep, process


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


def greedy_or_sample(
    state: TFDecoding,
    prompt: tf.Tensor,
    logits: tf.Tensor,
    options: GenerationOptions,
    tokens: SpecialTokens,
    seed: tf.Tensor,
) -> dict[str, tf.Tensor]:
    """One token per row per step, picked by argmax or by sampling; finished rows get the pad id."""
    repeats = options.num_return_sequences if options.do_sample else 1
    state.expand(repeats)
    prompt, logits = tf.repeat(prompt, repeats, axis=0), tf.repeat(logits, repeats, axis=0)
    width = prompt.shape[1]
    steps = state.cache.capacity - width

    def body(loop):
        state.restore(loop["carried"])
        generated = loop["generated"]
        history = tf.concat([prompt, loop["chosen"]], axis=1) if options.needs_history else None
        scores = process(loop["logits"], TFStep(state, generated, options, tokens, history, width + generated))
        out = {**loop, **record(loop, generated, scores, loop["logits"])}
        if options.do_sample:
            picked = tf.random.stateless_categorical(scores, 1, seed=tf.stack([seed, generated]), dtype=tf.int32)[:, 0]
        else:
            picked = tf.argmax(scores, axis=-1, output_type=tf.int32)
        picked = tf.where(loop["unfinished"], picked, tokens.pad)
        out["chosen"] = set_column(loop["chosen"], generated, picked)
        unfinished = loop["unfinished"] & ~is_end(picked, tokens) & (generated + 1 < state.max_new)
        state.mark(picked)
        before = state.carry()  # both branches start from here (tf.cond traces them one after the other)

        def advance():
            state.restore(before)
            return state.step(picked, generated + 1), state.carry()

        out["logits"], out["carried"] = tf.cond(tf.reduce_any(unfinished), advance, lambda: (loop["logits"], before))
        out.update(generated=generated + 1, unfinished=unfinished)
        return (out,)

    loop = {
        "generated": tf.constant(0),
        "logits": logits,
        "chosen": tf.fill((tf.shape(prompt)[0], steps), tf.constant(tokens.pad, tf.int32)),
        "unfinished": state.max_new > 0,
        "carried": state.carry(),
        **step_buffers(options, steps, tf.shape(prompt)[0], logits.shape[-1]),
    }
    (out,) = tf.while_loop(
        lambda loop: (loop["generated"] < steps) & tf.reduce_any(loop["unfinished"]),
        body,
        (loop,),
        maximum_iterations=steps,
    )
    return {key: out[key] for key in ("chosen", "generated", "scores", "raw_logits") if key in out} | {"prompt": prompt}


COMPILED_PER_DECODER = 8  # XLA decoding functions kept per decoder; the least recently used is dropped


def compiled_functions(decoder) -> FunctionCache:
    """The decoder's cache of XLA decoding functions (thread-safe, at most `COMPILED_PER_DECODER`)."""
    return cache_on(decoder, "_blip_generate_functions", lambda: COMPILED_PER_DECODER)


def _compiled(decoder, options: GenerationOptions, tokens: SpecialTokens, capacity: int, signature: tuple):
    """One XLA-compiled decoding function per (options, tokens, capacity, input signature) of a decoder, in a
    bounded, thread-safe LRU cache. Each is traced once (its signature is fixed, and threads asking for the
    same new key at once share one function), so TensorFlow never retraces or warns."""
    from blip_tf.beam_search import beam_search, group_beam_search

    key = (options.static_key, tokens, capacity, signature)
    functions = compiled_functions(decoder)
    loop = group_beam_search if options.is_group_beam else beam_search if options.is_beam else greedy_or_sample

    def run(encoder_hidden_states, encoder_attention_mask, ids, mask, positions, max_new, min_total, seed):
        functions.count_trace(key)  # Python runs only while TensorFlow traces
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
            options,
        )
        return loop(state, prompt, logits, options, tokens, seed)

    # A partial per key: TensorFlow counts traces per Python function, and each of these is traced once.
    return functions.get(
        key, lambda: tf.function(functools.partial(run), input_signature=list(signature), jit_compile=True)
    )


def assemble(out: dict[str, tf.Tensor], options: GenerationOptions, width: int) -> tuple[tf.Tensor, tf.Tensor | None]:
    """(sequences, beam scores) from the compiled loop's static buffers, cut to their used length.

    TF ops only, so serving graphs use it too (outside XLA: the lengths are data-dependent).
    """
    if options.is_beam:
        used = width + tf.reduce_max(out["finished_lengths"])
        sequences = tf.reshape(out["finished"][:, :, :used], (-1, used))
        return sequences, tf.reshape(out["finished_scores"], (-1,))
    return tf.concat([out["prompt"], out["chosen"][:, : out["generated"]]], axis=1), None


def to_output(out: dict[str, tf.Tensor], options: GenerationOptions, width: int) -> Any:
    """`generate`'s output object (eagerly): ids and, as asked, per-step scores, logits and beam indices."""
    sequences, sequences_scores = assemble(out, options, width)
    steps = int(out["generated"])
    scores = tuple(out["scores"][i] for i in range(steps)) if options.output_scores else None
    logits = tuple(out["raw_logits"][i] for i in range(steps)) if options.output_logits else None
    if not options.is_beam:
        return GenerateDecoderOnlyOutput(sequences=sequences, scores=scores, logits=logits)
    rows = tf.reshape(out["finished_rows"][:, :, : sequences.shape[1] - width], (sequences.shape[0], -1))
    return GenerateBeamDecoderOnlyOutput(
        sequences=sequences, sequences_scores=sequences_scores, scores=scores, logits=logits, beam_indices=rows
    )


def decode_prepared(
    decoder,
    ids,
    mask,
    positions,
    max_new,
    min_total,
    encoder_hidden_states,
    encoder_attention_mask,
    options: GenerationOptions,
    tokens: SpecialTokens,
    capacity: int,
    seed,
) -> dict[str, tf.Tensor]:
    """Run the compiled loop on prepared (left-padded) prompt tensors; works eagerly and inside graphs."""
    arguments = (encoder_hidden_states, tf.cast(encoder_attention_mask, tf.int32), ids, mask, positions)
    arguments += (max_new, min_total, seed)
    signature = tuple(tf.TensorSpec.from_tensor(tf.convert_to_tensor(value)) for value in arguments)
    return _compiled(decoder, options, tokens, capacity, signature)(*arguments)


def generate(
    decoder,
    rows: list[list[int]],
    encoder_hidden_states: tf.Tensor,
    encoder_attention_mask: tf.Tensor | None,
    options: GenerationOptions,
    tokens: SpecialTokens,
) -> tf.Tensor | GenerateDecoderOnlyOutput:
    """Decode one prompt row per image; int32 ids begin with the start token, prompts come left-padded."""
    if not rows:
        return empty_output(options)
    ids, mask, positions = left_pad(rows, decoder.config.pad_token_id)
    limits = [options.length_limits(len(row), decoder.config.max_position_embeddings) for row in rows]
    max_new = np.array([limit[0] for limit in limits], np.int32)
    min_total = np.array([limit[1] for limit in limits], np.int32)
    if encoder_attention_mask is None:
        encoder_attention_mask = tf.ones(tf.shape(encoder_hidden_states)[:2], tf.int32)
    seed = options.seed if options.seed is not None else random.randrange(2**31)
    out = decode_prepared(
        decoder,
        tf.constant(ids, tf.int32),
        tf.constant(mask, tf.int32),
        tf.constant(positions, tf.int32),
        tf.constant(max_new),
        tf.constant(min_total),
        encoder_hidden_states,
        encoder_attention_mask,
        options,
        tokens,
        ids.shape[1] + int(max_new.max()),
        tf.constant(seed, tf.int32),
    )
    output = to_output(out, options, ids.shape[1])
    return output if options.return_dict_in_generate else output.sequences


def empty_output(options: GenerationOptions) -> tf.Tensor | GenerateDecoderOnlyOutput:
    """A batch of no images: (0, 1) ids (and empty scores) without running the model."""
    sequences = tf.zeros((0, 1), tf.int32)
    if not options.return_dict_in_generate:
        return sequences
    return empty_generate_output(options, sequences, tf.zeros((0,)))


def transition_scores(
    sequences: tf.Tensor,
    scores: tuple[tf.Tensor, ...],
    beam_indices: tf.Tensor | None,
    normalize_logits: bool,
    vocab_size: int,
) -> tf.Tensor:
    """`compute_transition_scores`: the score each generated token had when chosen, (rows, new tokens).

    Beam rows follow `beam_indices` (-1 past a hypothesis' end, where the score is 0).
    """
    sequences = tf.cast(sequences, tf.int64)
    if beam_indices is None:
        beam_indices = tf.broadcast_to(tf.range(scores[0].shape[0])[:, None], (scores[0].shape[0], len(scores)))
    stacked = tf.transpose(tf.reshape(tf.stack(scores), (len(scores), -1)))  # (N*V, steps)
    if normalize_logits:  # in float64: the same numbers on every CPU and in both trees, then the scores' dtype
        normalized = tf.nn.log_softmax(tf.reshape(tf.cast(stacked, tf.float64), (-1, vocab_size, stacked.shape[-1])), 1)
        stacked = tf.cast(tf.reshape(normalized, (-1, stacked.shape[-1])), stacked.dtype)
    beam_indices = tf.cast(beam_indices, tf.int64)
    unused = beam_indices < 0
    length = int(tf.reduce_max(tf.reduce_sum(tf.cast(~unused, tf.int32), axis=-1)))
    unused = unused[:, :length]
    rows = tf.where(unused, tf.zeros_like(beam_indices[:, :length]), beam_indices[:, :length])
    indices = sequences[:, sequences.shape[-1] - length :] + rows * vocab_size
    picked = tf.gather(tf.transpose(stacked[:, :length]), tf.transpose(indices), batch_dims=1)  # (length, rows)
    return tf.where(unused, 0.0, tf.transpose(picked))


class TFGenerationMixin:
    """What `transformers`' GenerationMixin adds to the classes that generate, beyond `generate` itself."""

    config: object

    def compute_transition_scores(
        self,
        sequences: Any,
        scores: tuple[Any, ...],
        beam_indices: Any = None,
        normalize_logits: bool = False,
    ) -> tf.Tensor:
        """The score of each generated token when it was chosen, (rows, new tokens) float32.

        `scores` (and `beam_indices` for beam search) come from `generate(..., output_scores=True,
        return_dict_in_generate=True)`; `normalize_logits` log-softmaxes them first.
        """
        vocab_size = self.config.get_text_config().vocab_size
        return transition_scores(sequences, tuple(scores), beam_indices, normalize_logits, vocab_size)


def export_for_serving(model: Any, export_dir: str, max_new_tokens: int = 20, num_beams: int = 1) -> str:
    """Write a SavedModel whose `serving_default` maps pixels (and, for VQA, question ids) to token ids.

    Captioning: `pixel_values` float32 (B, 3, H, W) -> `sequences` int32. Question answering adds
    `input_ids` and `attention_mask` int32 (B, T). Ids begin with BOS, as `generate` returns them.
    """
    from blip_core.generation.options import special_tokens

    options = GenerationOptions.from_kwargs(max_new_tokens=max_new_tokens, num_beams=num_beams)
    decoder, text = model.text_decoder, model.config.text_config
    tokens = special_tokens(options, text)
    size = model.config.vision_config.image_size
    pixels_spec = tf.TensorSpec((None, 3, size, size), tf.float32, name="pixel_values")
    ids_spec = tf.TensorSpec((None, None), tf.int32, name="input_ids")
    mask_spec = tf.TensorSpec((None, None), tf.int32, name="attention_mask")

    def decode(states, states_mask):
        batch = tf.shape(states)[0]
        ids = tf.fill((batch, 1), tf.constant(text.bos_token_id, tf.int32))
        limit = min(max_new_tokens, text.max_position_embeddings - 1)
        out = decode_prepared(
            decoder,
            ids,
            tf.ones_like(ids),
            tf.zeros_like(ids),
            tf.fill((batch,), limit),
            tf.zeros((batch,), tf.int32),
            states,
            states_mask,
            options,
            tokens,
            1 + limit,
            tf.constant(0, tf.int32),
        )
        return {"sequences": assemble(out, options, 1)[0]}

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
