"""Greedy decoding and sampling in NumPy (the entry point `generate` is in `generation.py`).

The NumPy twin of `blip_torch/generation.py`: one token per row per step,
picked by argmax, by sampling (a NumPy `Generator` seeded by `seed`; its
stream is not torch's) or by each image's own seeded uniforms
(`sampling_seeds`, the same ids as both trees); finished rows get the pad id.
"""

from __future__ import annotations

import time

import numpy as np

from blip_core.generation.host.decoding import Decoding, is_end
from blip_core.generation.host.logits_processors import Step, process
from blip_core.generation.options import GenerationOptions, SpecialTokens
from blip_core.generation.sampling import pick_index, row_uniforms
from blip_core.modeling.outputs import GenerateDecoderOnlyOutput


def random_generator(options: GenerationOptions) -> np.random.Generator:
    """NumPy's default generator, seeded by `options.seed` when given."""
    return np.random.default_rng(options.seed)


def probabilities(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (N, V)."""
    scores = np.asarray(scores, np.float64)
    shifted = np.exp(scores - scores.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def pick(
    scores: np.ndarray, options: GenerationOptions, generator: np.random.Generator, uniforms: np.ndarray | None
) -> np.ndarray:
    """Each row's token, int64 (rows,): by its seeded uniform (`uniforms` float64 (rows,)), sampled, or argmax."""
    if uniforms is not None:
        return pick_index(probabilities(scores), uniforms)
    if options.do_sample:
        return pick_index(probabilities(scores), 1.0 - generator.random(scores.shape[0]))
    return scores.argmax(-1).astype(np.int64)


def out_of_time(options: GenerationOptions, began: float) -> bool:
    """`max_time` (seconds since decoding began) has passed: every row stops, as `transformers` does."""
    return options.max_time is not None and time.monotonic() - began > options.max_time


def greedy_or_sample(
    state: Decoding, prompt: np.ndarray, logits: np.ndarray, options: GenerationOptions, tokens: SpecialTokens
) -> GenerateDecoderOnlyOutput:
    """One token per row per step, picked by argmax or by sampling; finished rows get the pad id."""
    began = time.monotonic()
    repeats = options.num_return_sequences if options.do_sample else 1
    state.expand(repeats)
    prompt, logits = np.repeat(prompt, repeats, 0), np.repeat(logits, repeats, 0)
    width, steps = prompt.shape[1], int(state.max_new.max())
    history = None
    if options.needs_history:
        history = np.full((prompt.shape[0], width + steps), tokens.pad, dtype=np.int64)
        history[:, :width] = prompt
    generator = random_generator(options)
    uniforms = None
    if options.sampling_seeds is not None:  # (rows, steps): each image's rows from its own seed
        uniforms = row_uniforms(options.sampling_seeds, repeats, steps)
    streamer = options.streamer
    if streamer is not None:
        streamer.put(prompt.copy())
    unfinished = state.max_new > 0
    chosen, all_scores, all_logits = [], [], []
    for generated in range(steps):
        scores = process(logits, Step(state, generated, options, tokens, history, width + generated))
        if options.output_scores:
            all_scores.append(scores)
        if options.output_logits:
            all_logits.append(logits)
        picked = pick(scores, options, generator, None if uniforms is None else uniforms[:, generated])
        picked = np.where(unfinished, picked, np.int64(tokens.pad))
        chosen.append(picked)
        if history is not None:
            history[:, width + generated] = picked
        if streamer is not None:
            streamer.put(picked.copy())
        unfinished = unfinished & ~is_end(picked, tokens) & (generated + 1 < state.max_new)
        if not unfinished.any() or out_of_time(options, began):
            break
        state.mark(picked)
        logits = state.step(picked, generated + 1)
    if streamer is not None:
        streamer.end()
    sequences = np.concatenate([prompt, np.stack(chosen, 1)], 1) if chosen else prompt
    return GenerateDecoderOnlyOutput(
        sequences=sequences,
        scores=tuple(all_scores) if options.output_scores else None,
        logits=tuple(all_logits) if options.output_logits else None,
    )
