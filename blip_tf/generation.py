"""Decoding for the captioning and VQA decoders: greedy and sampling over the state of `decoding.py`
(beams: `beam_search.py`).
Twin of `blip_torch/generation.py`, with the same rules and the same ids.

Forced difference: the loop runs inside one `tf.function(jit_compile=True)`
per (options, shapes), as a `tf.while_loop` over static shapes: the cache and
the output buffers are preallocated, finished steps are masked instead of
skipped, and the outputs are trimmed to their used length after the compiled call.
"""

from __future__ import annotations

import functools
import random
from typing import Any

import numpy as np
import tensorflow as tf

from blip_core.generation.options import GenerationOptions, SpecialTokens
from blip_core.generation.prompts import left_pad
from blip_core.generation.sampling import check_sampling_seeds, row_uniforms
from blip_core.modeling.cpu_features import native_bf16
from blip_core.modeling.function_cache import FunctionCache, cache_on
from blip_core.modeling.moved_names import forward_moved_names
from blip_core.modeling.outputs import GenerateBeamDecoderOnlyOutput, GenerateDecoderOnlyOutput, empty_generate_output
from blip_tf.decoding import TFDecoding, is_end, record, set_column, start, step_buffers
from blip_tf.logits_processors import TFStep, process


def seeded_pick(scores: tf.Tensor, uniforms: tf.Tensor) -> tf.Tensor:
    """Per-row inverse-CDF pick (blip_core.generation.sampling): int32 (rows,) from scores (rows, V) and float64
    uniforms (rows,) in (0, 1]; the first token whose cumulative probability (float64) reaches `u * total`."""
    cdf = tf.math.cumsum(tf.nn.softmax(tf.cast(scores, tf.float64), axis=-1), axis=-1)
    below = cdf < uniforms[:, None] * cdf[:, -1:]
    return tf.minimum(tf.reduce_sum(tf.cast(below, tf.int32), axis=-1), scores.shape[-1] - 1)


def pick(scores: tf.Tensor, options: GenerationOptions, seed: tf.Tensor, generated: tf.Tensor) -> tf.Tensor:
    """Each row's token (rows,) int32: by its seeded uniform (`seed` the (rows, steps) uniforms), sampled, or
    argmax."""
    if options.sampling_seeds is not None:
        return seeded_pick(scores, seed[:, generated])
    if options.do_sample:
        return tf.random.stateless_categorical(scores, 1, seed=tf.stack([seed, generated]), dtype=tf.int32)[:, 0]
    return tf.argmax(scores, axis=-1, output_type=tf.int32)


def greedy_or_sample(
    state: TFDecoding,
    prompt: tf.Tensor,
    logits: tf.Tensor,
    options: GenerationOptions,
    tokens: SpecialTokens,
    seed: tf.Tensor,
) -> dict[str, tf.Tensor]:
    """One token per row per step, picked by argmax or by sampling; finished rows get the pad id.

    `seed`: int32 scalar, or with `options.sampling_seeds` the float64 (rows, steps) uniforms of `row_uniforms`.
    """
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
        picked = pick(scores, options, seed, generated)
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


def use_xla(decoder) -> bool:
    """Whether decoding compiles with XLA: yes, except a bfloat16 model on a CPU with bfloat16 arithmetic and no GPU.
    XLA on CPU has no fast bfloat16 matrix product (`benchmarks/xla_dtypes.py`: one-row products stream 2 GB/s
    of bfloat16 weights, 28 GB/s of float32 ones), while TensorFlow's own oneDNN kernels, which a graph without XLA
    runs, use the CPU's bfloat16 units: there, graph decoding is about 3x faster than XLA's."""
    if decoder.compute_dtype != "bfloat16" or tf.config.list_logical_devices("GPU"):
        return True
    return not native_bf16()


def _compiled(decoder, options: GenerationOptions, tokens: SpecialTokens, capacity: int, signature: tuple):
    """One compiled decoding function (XLA, see `use_xla`) per (options, tokens, capacity, input signature) of a
    decoder, in a bounded, thread-safe LRU cache. Each is traced once (its signature is fixed, and threads asking
    for the same new key at once share one function), so TensorFlow never retraces or warns."""
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
        key, lambda: tf.function(functools.partial(run), input_signature=list(signature), jit_compile=use_xla(decoder))
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
    """Decode one prompt row per image; int32 ids begin with the start token, prompts come left-padded.

    Raises ValueError when `options.sampling_seeds` does not hold one seed per row.
    """
    check_sampling_seeds(options.sampling_seeds, len(rows))
    if not rows:
        return empty_output(options)
    ids, mask, positions = left_pad(rows, decoder.config.pad_token_id)
    limits = [options.length_limits(len(row), decoder.config.max_position_embeddings) for row in rows]
    max_new = np.array([limit[0] for limit in limits], np.int32)
    min_total = np.array([limit[1] for limit in limits], np.int32)
    if encoder_attention_mask is None:
        encoder_attention_mask = tf.ones(tf.shape(encoder_hidden_states)[:2], tf.int32)
    seed = tf.constant(options.seed if options.seed is not None else random.randrange(2**31), tf.int32)
    if options.sampling_seeds is not None:  # compiled code draws nothing: the uniforms go in the seed's slot
        repeats = options.num_return_sequences
        seed = tf.constant(row_uniforms(options.sampling_seeds, repeats, int(max_new.max())), tf.float64)
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
        seed,
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


# Names defined here before this file was split: old imports and whole-model pickles keep working.
__getattr__ = forward_moved_names(
    __name__,
    {
        "set_row": "blip_tf.decoding",
    },
)
