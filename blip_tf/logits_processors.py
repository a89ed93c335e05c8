"""Logits processors and warpers, one function each, run in `blip_core.generation.rules.LOGITS_PROCESSOR_ORDER`.
Twin of `blip_torch/logits_processors.py`.

Forced difference: everything runs inside the compiled decoding loop, so the
step counter and the write position are tensors, and shapes are static (the
history buffer has the cache's capacity; positions past a row's end are masked).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import tensorflow as tf

from blip_core.generation.options import GenerationOptions, SpecialTokens
from blip_core.generation.rules import LOGITS_PROCESSOR_ORDER, active_processors

NEG_INF = float("-inf")


@dataclass
class TFStep:
    """What the processors read at one decoding step, for N rows.

    `history` (N, T) holds each row's tokens right-aligned before column `cursor` (left padding before
    them); it is None unless a processor reads it. `diversity` (N, V) is group beam search's penalty.
    """

    state: Any  # decoding.TFDecoding: prompt lengths, limits, seen tokens, the prompt
    generated: tf.Tensor
    options: GenerationOptions
    tokens: SpecialTokens
    history: tf.Tensor | None = None
    cursor: tf.Tensor | int = 0
    diversity: tf.Tensor | None = None

    @property
    def lengths(self) -> tf.Tensor:
        """(N,) tokens in each row so far, BOS and prompt included (`transformers`' cur_len)."""
        return self.state.prompt_lengths + self.generated

    @property
    def keep(self) -> int:
        """`min_tokens_to_keep` of the warpers: beams keep one more than the end tokens."""
        return len(self.tokens.eos) + 1 if self.options.is_beam else 1


def _columns(scores: tf.Tensor, ids: tuple[int, ...]) -> tf.Tensor:
    """(V,) bool: True at `ids`."""
    mask = np.zeros(scores.shape[-1], bool)
    mask[list(ids)] = True
    return tf.constant(mask)


def _force(scores: tf.Tensor, rows: tf.Tensor, ids: tuple[int, ...]) -> tf.Tensor:
    """In `rows`, every token -inf except `ids` (0): the forced-token processors."""
    forced = tf.where(_columns(scores, ids), 0.0, NEG_INF)
    return tf.where(rows[:, None], forced[None, :], scores)


def _tail(step: TFStep, count: int) -> tf.Tensor:
    """(N, count) the last `count` tokens of each row (garbage where a row is shorter; callers mask)."""
    columns = tf.maximum(step.cursor - count + tf.range(count), 0)
    return tf.gather(step.history, columns, axis=1)


def _bias(scores: tf.Tensor, step: TFStep, entries: tuple[tuple[tuple[int, ...], float], ...]) -> tf.Tensor:
    """`SequenceBiasLogitsProcessor`: single tokens always, longer sequences where the row ends with the prefix."""
    single = np.zeros(scores.shape[-1], np.float32)
    for ids, value in entries:
        if len(ids) == 1:
            single[ids[0]] = value
    bias = tf.zeros_like(scores) + single[None, :]
    for ids, value in entries:
        if len(ids) == 1:
            continue
        prefix = tf.constant(ids[:-1], step.history.dtype)
        match = tf.reduce_all(_tail(step, len(ids) - 1) == prefix, axis=-1) & (step.lengths >= len(ids))
        bias = bias + tf.where(match[:, None] & _columns(scores, ids[-1:])[None, :], value, 0.0)
    return scores + bias


def sequence_bias(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    return _bias(scores, step, step.options.sequence_bias)


def diversity(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    """`HammingDiversityLogitsProcessor`: the penalty the beam search put in `step.diversity`."""
    return scores - step.diversity


def _penalise(scores: tf.Tensor, where: tf.Tensor, penalty: float) -> tf.Tensor:
    penalized = tf.where(scores < 0, scores * penalty, scores / penalty)
    return tf.where(where, penalized, scores)


def encoder_repetition_penalty(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    """Tokens of the prompt made likelier (`transformers` inverts the penalty)."""
    return _penalise(scores, step.state.prompt_tokens, 1 / step.options.encoder_repetition_penalty)


def repetition_penalty(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    return _penalise(scores, step.state.seen, step.options.repetition_penalty)


def _ban_continuations(scores: tf.Tensor, source: tf.Tensor, valid: tf.Tensor, tail: tf.Tensor) -> tf.Tensor:
    """-inf for every token that follows, in `source` (N, S), an (n-1)-gram equal to `tail` (N, n-1).

    `valid` (N, S - n + 1) says which n-gram starts count.
    """
    n = tail.shape[1] + 1
    starts = source.shape[1] - n + 1
    if starts <= 0:
        return scores
    match = valid
    for k in range(n - 1):
        match &= source[:, k : k + starts] == tail[:, k : k + 1]
    rows = tf.broadcast_to(tf.range(tf.shape(source)[0])[:, None], tf.shape(match))
    indices = tf.stack([rows, tf.cast(source[:, n - 1 :], tf.int32)], axis=-1)  # (N, starts, 2)
    banned = tf.scatter_nd(
        tf.reshape(indices, (-1, 2)), tf.reshape(tf.cast(match, scores.dtype), (-1,)), tf.shape(scores)
    )
    return tf.where(banned > 0, tf.constant(NEG_INF, scores.dtype), scores)


def no_repeat_ngram(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    """`NoRepeatNGramLogitsProcessor`: no n-gram twice in a row's whole sequence (prompt included)."""
    n, source = step.options.no_repeat_ngram_size, step.history
    starts = tf.range(max(source.shape[1] - n + 1, 0))
    first = step.cursor - step.lengths  # where each row's tokens begin
    valid = (starts[None] >= first[:, None]) & (starts[None] <= step.cursor - n)
    return _ban_continuations(scores, source, valid, _tail(step, n - 1))


def encoder_no_repeat_ngram(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    """`EncoderNoRepeatNGramLogitsProcessor`: no n-gram of the prompt repeated in the output."""
    n, prompt = step.options.encoder_no_repeat_ngram_size, step.state.prompt
    starts = tf.range(max(prompt.shape[1] - n + 1, 0))
    first = prompt.shape[1] - step.state.prompt_lengths
    valid = (starts[None] >= first[:, None]) & (step.lengths >= n - 1)[:, None]
    return _ban_continuations(scores, prompt, valid, _tail(step, n - 1))


def bad_words(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    return _bias(scores, step, tuple((ids, NEG_INF) for ids in step.options.bad_words))


def min_length(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    """No end token in rows shorter than their minimum length."""
    short = step.lengths < step.state.min_total
    return tf.where(short[:, None] & _columns(scores, step.tokens.eos)[None, :], NEG_INF, scores)


def forced_bos(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    return _force(scores, step.lengths == 1, (step.options.forced_bos_token_id,))


def forced_eos(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    return _force(scores, step.generated == step.state.max_new - 1, step.options.forced_eos_token_ids)


def remove_invalid_values(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    info = np.finfo(scores.dtype.as_numpy_dtype)
    scores = tf.where(tf.math.is_nan(scores), tf.zeros_like(scores), scores)
    scores = tf.where(scores == np.inf, tf.constant(info.max, scores.dtype), scores)
    return tf.where(scores == -np.inf, tf.constant(info.min, scores.dtype), scores)


def exponential_decay_length_penalty(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    """Past `start` new tokens, the end tokens' scores grow by |score| * (factor ** steps past - 1)."""
    start, factor = step.options.exponential_decay_length_penalty
    past = tf.cast(step.generated - start, tf.float64)  # the power in double, as Python computes it
    growth = tf.cast(tf.pow(tf.constant(factor, tf.float64), past) - 1.0, scores.dtype)
    grow = (step.generated > start) & _columns(scores, step.tokens.eos)
    return tf.where(grow[None, :], scores + tf.abs(scores) * growth, scores)


def suppress_tokens(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    return tf.where(_columns(scores, step.options.suppress_tokens)[None, :], NEG_INF, scores)


def begin_suppress_tokens(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    """Suppressed at a row's first new token (its second when a forced BOS comes first)."""
    lengths = step.state.prompt_lengths
    begin = lengths + tf.cast((lengths == 1) & (step.options.forced_bos_token_id is not None), lengths.dtype)
    rows = step.lengths == begin
    return tf.where(rows[:, None] & _columns(scores, step.options.begin_suppress_tokens)[None, :], NEG_INF, scores)


def temperature(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    return scores / step.options.temperature


def top_k(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    count = min(max(step.options.top_k, step.keep), scores.shape[-1])
    threshold = tf.math.top_k(scores, count).values[..., -1:]
    return tf.where(scores < threshold, tf.constant(NEG_INF, scores.dtype), scores)


def _unsort(remove_sorted: tf.Tensor, order: tf.Tensor) -> tf.Tensor:
    return tf.gather(remove_sorted, tf.argsort(order, axis=-1), batch_dims=1)  # back to vocabulary order


def _keep_first(remove_sorted: tf.Tensor, count: int) -> tf.Tensor:
    return remove_sorted & (tf.range(remove_sorted.shape[-1]) >= count)[None, :]


def top_p(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    order = tf.argsort(scores, axis=-1, direction="ASCENDING", stable=True)
    sorted_scores = tf.gather(scores, order, batch_dims=1)
    remove = tf.math.cumsum(tf.nn.softmax(sorted_scores, axis=-1), axis=-1) <= (1 - step.options.top_p)
    remove = remove & (tf.range(scores.shape[-1]) < scores.shape[-1] - step.keep)[None, :]
    return tf.where(_unsort(remove, order), tf.constant(NEG_INF, scores.dtype), scores)


def min_p(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    probs = tf.nn.softmax(scores, axis=-1)
    remove = probs < step.options.min_p * tf.reduce_max(probs, axis=-1, keepdims=True)
    order = tf.argsort(scores, axis=-1, direction="DESCENDING", stable=True)
    remove_sorted = _keep_first(tf.gather(remove, order, batch_dims=1), step.keep)
    return tf.where(_unsort(remove_sorted, order), tf.constant(NEG_INF, scores.dtype), scores)


def typical_p(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    normalized = tf.nn.log_softmax(scores, axis=-1)
    products = normalized * tf.exp(normalized)
    entropy = -tf.reduce_sum(tf.where(tf.math.is_nan(products), 0.0, products), axis=-1, keepdims=True)
    shifted = tf.abs(-normalized - entropy)
    order = tf.argsort(shifted, axis=-1, direction="ASCENDING", stable=True)
    shifted = tf.gather(shifted, order, batch_dims=1)
    cumulative = tf.math.cumsum(tf.nn.softmax(tf.gather(scores, order, batch_dims=1), axis=-1), axis=-1)
    last = tf.minimum(
        tf.reduce_sum(tf.cast(cumulative < step.options.typical_p, tf.int32), axis=1), scores.shape[-1] - 1
    )
    remove = _keep_first(shifted > tf.gather(shifted, last[:, None], batch_dims=1), step.keep)
    return tf.where(_unsort(remove, order), tf.constant(NEG_INF, scores.dtype), scores)


def _cut_below(scores: tf.Tensor, threshold: Any, step: TFStep) -> tf.Tensor:
    """Remove tokens whose probability is below `threshold`, keeping the `keep` best."""
    remove = tf.nn.softmax(scores, axis=-1) < threshold
    kept = tf.math.top_k(scores, min(step.keep, scores.shape[-1])).values[..., -1:]
    return tf.where(remove & (scores < kept), tf.constant(NEG_INF, scores.dtype), scores)


def epsilon_cutoff(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    return _cut_below(scores, step.options.epsilon_cutoff, step)


def eta_cutoff(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    """η-sampling: the cut is min(ε, √ε·exp(-entropy)), entropy as `torch.distributions.Categorical` has it."""
    epsilon = tf.constant(step.options.eta_cutoff, scores.dtype)
    normalized = scores - tf.reduce_logsumexp(scores, axis=-1, keepdims=True)
    clamped = tf.maximum(normalized, np.finfo(scores.dtype.as_numpy_dtype).min)
    entropy = -tf.reduce_sum(clamped * tf.nn.softmax(normalized, axis=-1), axis=-1)
    eta = tf.minimum(epsilon, tf.sqrt(epsilon) * tf.exp(-entropy))[..., None]
    return _cut_below(scores, eta, step)


def renormalize_logits(scores: tf.Tensor, step: TFStep) -> tf.Tensor:
    return tf.nn.log_softmax(scores, axis=-1)


PROCESSORS = {name: globals()[name] for name in LOGITS_PROCESSOR_ORDER}


def process(scores: tf.Tensor, step: TFStep, names: tuple[str, ...] | None = None) -> tf.Tensor:
    """Apply the processors `names` (default: every active one) in order."""
    for name in active_processors(step.options) if names is None else names:
        scores = PROCESSORS[name](scores, step)
    return scores


def split_at_diversity(options: GenerationOptions) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(processors before the diversity penalty, the penalty and those after): group beam search runs the
    second part once per group, after the groups before it have chosen their tokens."""
    names = active_processors(options)
    if "diversity" not in names:
        return (), names
    cut = names.index("diversity")
    return names[:cut], names[cut:]


def with_diversity(step: TFStep, penalty: tf.Tensor) -> TFStep:
    return replace(step, diversity=penalty)
