"""Logits processors and warpers in NumPy, run in `blip_core.generation.rules.LOGITS_PROCESSOR_ORDER`.

The NumPy twin of `blip_torch/logits_processors.py`: each function has the
meaning of the `transformers` 4.57.6 processor of the same name, applied per
row (a row's length, history and limits are its own). Scores are float32
(N, V) arrays; every function returns a new array or the one it was given.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from blip_core.generation.options import GenerationOptions, SpecialTokens
from blip_core.generation.rules import LOGITS_PROCESSOR_ORDER, active_processors

NEG_INF = np.float32(-np.inf)


def logsumexp(scores: np.ndarray) -> np.ndarray:
    """(N, 1) log of the summed exponentials of each row, in the scores' dtype (-inf for an all -inf row)."""
    top = scores.max(-1, keepdims=True)
    top = np.where(np.isfinite(top), top, np.zeros_like(top))
    with np.errstate(divide="ignore"):
        return np.log(np.exp(scores - top).sum(-1, keepdims=True)) + top


def log_softmax(scores: np.ndarray) -> np.ndarray:
    return scores - logsumexp(scores)


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax in the scores' dtype (float32 in, float32 out)."""
    shifted = np.exp(scores - scores.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def cumsum(values: np.ndarray) -> np.ndarray:
    """Row-wise cumulative sum accumulated in float64, returned in the input dtype (as PyTorch's CPU kernel)."""
    return np.cumsum(values, axis=-1, dtype=np.float64).astype(values.dtype)


def kth_largest(scores: np.ndarray, count: int) -> np.ndarray:
    """(N, 1): the `count`-th largest value of each row (1 <= count <= V)."""
    width = scores.shape[-1]
    return np.partition(scores, width - count, axis=-1)[:, width - count : width - count + 1]


@dataclass
class Step:
    """What the processors read at one decoding step, for N rows (the twin of blip_torch's `Step`).

    `history` (N, T) int64 holds each row's tokens right-aligned before column `cursor` (None unless a
    processor reads it); `diversity` (N, V) float32 is group beam search's penalty.
    """

    state: Any  # host.decoding.Decoding
    generated: int
    options: GenerationOptions
    tokens: SpecialTokens
    history: np.ndarray | None = None
    cursor: int = 0
    diversity: np.ndarray | None = None

    @property
    def lengths(self) -> np.ndarray:
        """(N,) tokens in each row so far, BOS and prompt included."""
        return self.state.prompt_lengths + self.generated

    @property
    def keep(self) -> int:
        """`min_tokens_to_keep` of the warpers: beams keep one more than the end tokens."""
        return len(self.tokens.eos) + 1 if self.options.is_beam else 1


def _columns(scores: np.ndarray, ids: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(scores.shape[-1], dtype=bool)
    mask[list(ids)] = True
    return mask


def _force(scores: np.ndarray, rows: np.ndarray, ids: tuple[int, ...]) -> np.ndarray:
    """In `rows` (N,) bool, every token -inf except `ids` (0)."""
    forced = np.where(_columns(scores, ids), np.float32(0.0), NEG_INF)
    return np.where(np.asarray(rows)[:, None], forced, scores)


def _tail(step: Step, count: int) -> np.ndarray:
    """(N, count) the last `count` tokens of each row (garbage where a row is shorter; callers mask)."""
    columns = np.maximum(np.arange(step.cursor - count, step.cursor), 0)
    return step.history[:, columns]


def _bias(scores: np.ndarray, step: Step, entries: tuple[tuple[tuple[int, ...], float], ...]) -> np.ndarray:
    """`SequenceBiasLogitsProcessor`: single tokens always, longer sequences where the row ends with the prefix."""
    bias = np.zeros_like(scores)
    single = [(ids[0], value) for ids, value in entries if len(ids) == 1]
    if single:
        bias[:, [t for t, _ in single]] = np.array([v for _, v in single], dtype=scores.dtype)
    for ids, value in entries:
        if len(ids) == 1:
            continue
        match = (_tail(step, len(ids) - 1) == np.asarray(ids[:-1])).all(-1) & (step.lengths >= len(ids))
        bias[:, ids[-1]] += np.where(match, np.float32(value), np.float32(0.0))
    return scores + bias


def sequence_bias(scores: np.ndarray, step: Step) -> np.ndarray:
    return _bias(scores, step, step.options.sequence_bias)


def diversity(scores: np.ndarray, step: Step) -> np.ndarray:
    """`HammingDiversityLogitsProcessor`: the penalty the beam search put in `step.diversity`."""
    return scores - step.diversity


def _penalise(scores: np.ndarray, where: np.ndarray, penalty: float) -> np.ndarray:
    """Scores at `where` (N, V) bool multiplied by `penalty` when negative, divided by it otherwise; only the
    marked entries are computed (a row holds few tokens)."""
    rows, columns = np.nonzero(where)
    marked = scores[rows, columns]
    out = scores.copy()
    out[rows, columns] = np.where(marked < 0, marked * penalty, marked / penalty)
    return out


def encoder_repetition_penalty(scores: np.ndarray, step: Step) -> np.ndarray:
    """Tokens of the prompt made likelier (`transformers` inverts the penalty)."""
    return _penalise(scores, step.state.prompt_tokens, 1 / step.options.encoder_repetition_penalty)


def repetition_penalty(scores: np.ndarray, step: Step) -> np.ndarray:
    return _penalise(scores, step.state.seen, step.options.repetition_penalty)


def _ban_continuations(scores: np.ndarray, source: np.ndarray, valid: np.ndarray, tail: np.ndarray) -> np.ndarray:
    """-inf for every token that follows, in `source` (N, S), an (n-1)-gram equal to `tail` (N, n-1);
    `valid` (N, S - n + 1) says which n-gram starts count."""
    n = tail.shape[1] + 1
    starts = source.shape[1] - n + 1
    if starts <= 0:
        return scores
    match = valid.copy()
    for k in range(n - 1):
        match &= source[:, k : k + starts] == tail[:, k : k + 1]
    banned = np.zeros(scores.shape, dtype=bool)
    rows = np.broadcast_to(np.arange(scores.shape[0])[:, None], match.shape)
    banned[rows[match], source[:, n - 1 :][match]] = True
    return np.where(banned, NEG_INF, scores)


def no_repeat_ngram(scores: np.ndarray, step: Step) -> np.ndarray:
    """`NoRepeatNGramLogitsProcessor`: no n-gram twice in a row's whole sequence (prompt included)."""
    n, source = step.options.no_repeat_ngram_size, step.history[:, : step.cursor]
    starts = np.arange(max(step.cursor - n + 1, 0))
    first = step.cursor - step.lengths
    valid = (starts[None] >= first[:, None]) & (starts[None] <= step.cursor - n)
    return _ban_continuations(scores, source, valid, _tail(step, n - 1))


def encoder_no_repeat_ngram(scores: np.ndarray, step: Step) -> np.ndarray:
    """`EncoderNoRepeatNGramLogitsProcessor`: no n-gram of the prompt repeated in the output."""
    n, prompt = step.options.encoder_no_repeat_ngram_size, step.state.prompt
    starts = np.arange(max(prompt.shape[1] - n + 1, 0))
    first = prompt.shape[1] - step.state.prompt_lengths
    valid = (starts[None] >= first[:, None]) & (step.lengths >= n - 1)[:, None]
    return _ban_continuations(scores, prompt, valid, _tail(step, n - 1))


def bad_words(scores: np.ndarray, step: Step) -> np.ndarray:
    return _bias(scores, step, tuple((ids, -np.inf) for ids in step.options.bad_words))


def min_length(scores: np.ndarray, step: Step) -> np.ndarray:
    """No end token in rows shorter than their minimum length (only the end columns are touched)."""
    short = step.lengths < step.state.min_total
    if not short.any():
        return scores
    ends = list(step.tokens.eos)
    scores = scores.copy()
    scores[:, ends] = np.where(short[:, None], NEG_INF, scores[:, ends])
    return scores


def forced_bos(scores: np.ndarray, step: Step) -> np.ndarray:
    return _force(scores, step.lengths == 1, (step.options.forced_bos_token_id,))


def forced_eos(scores: np.ndarray, step: Step) -> np.ndarray:
    return _force(scores, step.generated == step.state.max_new - 1, step.options.forced_eos_token_ids)


def remove_invalid_values(scores: np.ndarray, step: Step) -> np.ndarray:
    info = np.finfo(scores.dtype)
    return np.nan_to_num(scores, nan=0.0, posinf=info.max, neginf=info.min)


def exponential_decay_length_penalty(scores: np.ndarray, step: Step) -> np.ndarray:
    """Past `start` new tokens, the end tokens' scores grow by |score| * (factor ** steps past - 1)."""
    start, factor = step.options.exponential_decay_length_penalty
    if step.generated <= start:
        return scores
    growth = factor ** (step.generated - start) - 1
    with np.errstate(over="ignore", invalid="ignore"):  # -inf scores give NaN, as in PyTorch
        return np.where(_columns(scores, step.tokens.eos), scores + np.abs(scores) * growth, scores)


def suppress_tokens(scores: np.ndarray, step: Step) -> np.ndarray:
    return np.where(_columns(scores, step.options.suppress_tokens), NEG_INF, scores)


def begin_suppress_tokens(scores: np.ndarray, step: Step) -> np.ndarray:
    """Suppressed at a row's first new token (its second when a forced BOS comes first)."""
    lengths = step.state.prompt_lengths
    begin = lengths + ((lengths == 1) & (step.options.forced_bos_token_id is not None))
    rows = step.lengths == begin
    return np.where(rows[:, None] & _columns(scores, step.options.begin_suppress_tokens), NEG_INF, scores)


def temperature(scores: np.ndarray, step: Step) -> np.ndarray:
    return scores / step.options.temperature


def top_k(scores: np.ndarray, step: Step) -> np.ndarray:
    count = min(max(step.options.top_k, step.keep), scores.shape[-1])
    return np.where(scores < kth_largest(scores, count), NEG_INF, scores)


def _unsort(remove_sorted: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Values given in `order` (N, V) put back at their columns."""
    out = np.empty_like(remove_sorted)
    np.put_along_axis(out, order, remove_sorted, axis=-1)
    return out


def top_p(scores: np.ndarray, step: Step) -> np.ndarray:
    order = np.argsort(scores, axis=-1, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, -1)
    remove = cumsum(softmax(sorted_scores)) <= (1 - step.options.top_p)
    remove[..., -step.keep :] = False
    return np.where(_unsort(remove, order), NEG_INF, scores)


def min_p(scores: np.ndarray, step: Step) -> np.ndarray:
    probs = softmax(scores)
    remove = probs < step.options.min_p * probs.max(-1, keepdims=True)
    order = np.argsort(-scores, axis=-1, kind="stable")
    remove_sorted = np.take_along_axis(remove, order, -1)
    remove_sorted[..., : step.keep] = False
    return np.where(_unsort(remove_sorted, order), NEG_INF, scores)


def typical_p(scores: np.ndarray, step: Step) -> np.ndarray:
    normalized = log_softmax(scores)
    with np.errstate(invalid="ignore"):
        entropy = -np.nansum(normalized * np.exp(normalized), -1, keepdims=True)
    distance = np.abs(-normalized - entropy)
    order = np.argsort(distance, axis=-1, kind="stable")
    shifted = np.take_along_axis(distance, order, -1)
    cumulative = cumsum(softmax(np.take_along_axis(scores, order, -1)))
    last = np.minimum((cumulative < step.options.typical_p).sum(1), scores.shape[-1] - 1)
    remove = shifted > np.take_along_axis(shifted, last[:, None], 1)
    remove[..., : step.keep] = False
    return np.where(_unsort(remove, order), NEG_INF, scores)


def _cut_below(scores: np.ndarray, threshold: Any, step: Step) -> np.ndarray:
    """Remove tokens whose probability is below `threshold`, keeping the `keep` best."""
    remove = softmax(scores) < threshold
    kept = kth_largest(scores, min(step.keep, scores.shape[-1]))
    return np.where(remove & (scores < kept), NEG_INF, scores)


def epsilon_cutoff(scores: np.ndarray, step: Step) -> np.ndarray:
    return _cut_below(scores, step.options.epsilon_cutoff, step)


def eta_cutoff(scores: np.ndarray, step: Step) -> np.ndarray:
    """η-sampling: the cut is min(ε, √ε·exp(-entropy)), entropy as `torch.distributions.Categorical` has it."""
    epsilon = np.asarray(step.options.eta_cutoff, dtype=scores.dtype)
    normalized = scores - logsumexp(scores)
    entropy = -(np.maximum(normalized, np.finfo(scores.dtype).min) * softmax(normalized)).sum(-1)
    eta = np.minimum(epsilon, np.sqrt(epsilon) * np.exp(-entropy))[..., None]
    return _cut_below(scores, eta, step)


def renormalize_logits(scores: np.ndarray, step: Step) -> np.ndarray:
    return log_softmax(scores)


PROCESSORS = {name: globals()[name] for name in LOGITS_PROCESSOR_ORDER}


def process(scores: np.ndarray, step: Step, names: tuple[str, ...] | None = None) -> np.ndarray:
    """Apply the processors `names` (default: every active one) in order; float32 (N, V) in and out."""
    for name in active_processors(step.options) if names is None else names:
        scores = PROCESSORS[name](scores, step)
    return scores


def split_at_diversity(options: GenerationOptions) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(processors before the diversity penalty, the penalty and those after), for group beam search."""
    names = active_processors(options)
    if "diversity" not in names:
        return (), names
    cut = names.index("diversity")
    return names[:cut], names[cut:]


def with_diversity(step: Step, penalty: np.ndarray) -> Step:
    return replace(step, diversity=penalty)
