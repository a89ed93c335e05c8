"""Logits processors and warpers, one function each, run in `blip_core.generation.rules.LOGITS_PROCESSOR_ORDER`.

Each has the meaning of the `transformers` 4.57.6 processor of the same name,
applied per row: a row's length, history and limits are its own (prompts are
left-padded), so a row of a batch gets what it gets alone. Only the
processors an option set turns on run (`active_processors`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from blip_core.generation.options import GenerationOptions, SpecialTokens
from blip_core.generation.rules import LOGITS_PROCESSOR_ORDER, active_processors

NEG_INF = float("-inf")


@dataclass
class Step:
    """What the processors read at one decoding step, for N rows.

    `history` (N, T) holds each row's tokens right-aligned before column `cursor` (left padding before
    them); it is None unless a processor reads it. `diversity` (N, V) is group beam search's penalty.
    """

    state: Any  # decoding.Decoding: prompt lengths, limits, seen tokens, the prompt
    generated: int
    options: GenerationOptions
    tokens: SpecialTokens
    history: torch.Tensor | None = None
    cursor: int = 0
    diversity: torch.Tensor | None = None

    @property
    def lengths(self) -> torch.Tensor:
        """(N,) tokens in each row so far, BOS and prompt included (`transformers`' cur_len)."""
        return self.state.prompt_lengths + self.generated

    @property
    def keep(self) -> int:
        """`min_tokens_to_keep` of the warpers: beams keep one more than the end tokens."""
        return len(self.tokens.eos) + 1 if self.options.is_beam else 1


def _columns(scores: torch.Tensor, ids: tuple[int, ...]) -> torch.Tensor:
    """(V,) bool: True at `ids`."""
    mask = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
    mask[list(ids)] = True
    return mask


def _force(scores: torch.Tensor, rows: torch.Tensor, ids: tuple[int, ...]) -> torch.Tensor:
    """In `rows`, every token -inf except `ids` (0): the forced-token processors."""
    forced = torch.where(_columns(scores, ids), 0.0, NEG_INF)
    return torch.where(rows[:, None], forced, scores)


def _tail(step: Step, count: int) -> torch.Tensor:
    """(N, count) the last `count` tokens of each row (garbage where a row is shorter; callers mask)."""
    start = step.cursor - count
    columns = torch.arange(start, step.cursor, device=step.history.device).clamp(min=0)
    return step.history[:, columns]


def _bias(scores: torch.Tensor, step: Step, entries: tuple[tuple[tuple[int, ...], float], ...]) -> torch.Tensor:
    """`SequenceBiasLogitsProcessor`: single tokens always, longer sequences where the row ends with the prefix."""
    bias = torch.zeros_like(scores)
    single = [(ids[0], value) for ids, value in entries if len(ids) == 1]
    if single:
        bias[:, [t for t, _ in single]] = torch.tensor([v for _, v in single], dtype=scores.dtype)
    for ids, value in entries:
        if len(ids) == 1:
            continue
        prefix = torch.tensor(ids[:-1], device=scores.device)
        match = (_tail(step, len(ids) - 1) == prefix).all(-1) & (step.lengths >= len(ids))
        bias[:, ids[-1]] += torch.where(match, value, 0.0)
    return scores + bias


def sequence_bias(scores: torch.Tensor, step: Step) -> torch.Tensor:
    return _bias(scores, step, step.options.sequence_bias)


def diversity(scores: torch.Tensor, step: Step) -> torch.Tensor:
    """`HammingDiversityLogitsProcessor`: the penalty the beam search put in `step.diversity`."""
    return scores - step.diversity


def _penalise(scores: torch.Tensor, where: torch.Tensor, penalty: float) -> torch.Tensor:
    penalized = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(where, penalized, scores)


def encoder_repetition_penalty(scores: torch.Tensor, step: Step) -> torch.Tensor:
    """Tokens of the prompt made likelier (`transformers` inverts the penalty)."""
    return _penalise(scores, step.state.prompt_tokens, 1 / step.options.encoder_repetition_penalty)


def repetition_penalty(scores: torch.Tensor, step: Step) -> torch.Tensor:
    return _penalise(scores, step.state.seen, step.options.repetition_penalty)


def _ban_continuations(scores: torch.Tensor, source: torch.Tensor, valid: torch.Tensor, tail: torch.Tensor):
    """-inf for every token that follows, in `source` (N, S), an (n-1)-gram equal to `tail` (N, n-1).

    `valid` (N, S - n + 1) says which n-gram starts count.
    """
    n = tail.shape[1] + 1
    starts = source.shape[1] - n + 1
    if starts <= 0:
        return scores
    match = valid.clone()
    for k in range(n - 1):
        match &= source[:, k : k + starts] == tail[:, k : k + 1]
    banned = torch.zeros_like(scores).scatter_add_(1, source[:, n - 1 :], match.to(scores.dtype))
    return scores.masked_fill(banned > 0, NEG_INF)


def no_repeat_ngram(scores: torch.Tensor, step: Step) -> torch.Tensor:
    """`NoRepeatNGramLogitsProcessor`: no n-gram twice in a row's whole sequence (prompt included)."""
    n, source = step.options.no_repeat_ngram_size, step.history[:, : step.cursor]
    starts = torch.arange(max(step.cursor - n + 1, 0), device=scores.device)
    first = step.cursor - step.lengths  # where each row's tokens begin
    valid = (starts[None] >= first[:, None]) & (starts[None] <= step.cursor - n)
    return _ban_continuations(scores, source, valid, _tail(step, n - 1))


def encoder_no_repeat_ngram(scores: torch.Tensor, step: Step) -> torch.Tensor:
    """`EncoderNoRepeatNGramLogitsProcessor`: no n-gram of the prompt repeated in the output."""
    n, prompt = step.options.encoder_no_repeat_ngram_size, step.state.prompt
    starts = torch.arange(max(prompt.shape[1] - n + 1, 0), device=scores.device)
    first = prompt.shape[1] - step.state.prompt_lengths
    valid = (starts[None] >= first[:, None]) & (step.lengths >= n - 1)[:, None]
    return _ban_continuations(scores, prompt, valid, _tail(step, n - 1))


def bad_words(scores: torch.Tensor, step: Step) -> torch.Tensor:
    return _bias(scores, step, tuple((ids, NEG_INF) for ids in step.options.bad_words))


def min_length(scores: torch.Tensor, step: Step) -> torch.Tensor:
    """No end token in rows shorter than their minimum length (only the end columns are touched)."""
    short = step.lengths < step.state.min_total
    if not bool(short.any()):
        return scores
    ends = list(step.tokens.eos)
    scores = scores.clone()
    scores[:, ends] = scores[:, ends].masked_fill(short[:, None], NEG_INF)
    return scores


def forced_bos(scores: torch.Tensor, step: Step) -> torch.Tensor:
    return _force(scores, step.lengths == 1, (step.options.forced_bos_token_id,))


def forced_eos(scores: torch.Tensor, step: Step) -> torch.Tensor:
    return _force(scores, step.generated == step.state.max_new - 1, step.options.forced_eos_token_ids)


def remove_invalid_values(scores: torch.Tensor, step: Step) -> torch.Tensor:
    info = torch.finfo(scores.dtype)
    return torch.nan_to_num(scores, nan=0.0, posinf=info.max, neginf=info.min)


def exponential_decay_length_penalty(scores: torch.Tensor, step: Step) -> torch.Tensor:
    """Past `start` new tokens, the end tokens' scores grow by |score| * (factor ** steps past - 1)."""
    start, factor = step.options.exponential_decay_length_penalty
    if step.generated <= start:
        return scores
    growth = factor ** (step.generated - start) - 1
    ends = _columns(scores, step.tokens.eos)
    return torch.where(ends, scores + scores.abs() * growth, scores)


def suppress_tokens(scores: torch.Tensor, step: Step) -> torch.Tensor:
    return scores.masked_fill(_columns(scores, step.options.suppress_tokens), NEG_INF)


def begin_suppress_tokens(scores: torch.Tensor, step: Step) -> torch.Tensor:
    """Suppressed at a row's first new token (its second when a forced BOS comes first)."""
    lengths = step.state.prompt_lengths
    begin = lengths + ((lengths == 1) & (step.options.forced_bos_token_id is not None)).long()
    rows = step.lengths == begin
    return torch.where(rows[:, None] & _columns(scores, step.options.begin_suppress_tokens), NEG_INF, scores)


def temperature(scores: torch.Tensor, step: Step) -> torch.Tensor:
    return scores / step.options.temperature


def top_k(scores: torch.Tensor, step: Step) -> torch.Tensor:
    count = min(max(step.options.top_k, step.keep), scores.shape[-1])
    threshold = torch.topk(scores, count)[0][..., -1, None]
    return scores.masked_fill(scores < threshold, NEG_INF)


def _unsort(remove_sorted: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    return remove_sorted.scatter(1, order, remove_sorted)


def top_p(scores: torch.Tensor, step: Step) -> torch.Tensor:
    sorted_scores, order = torch.sort(scores, descending=False)
    remove = sorted_scores.softmax(dim=-1).cumsum(dim=-1) <= (1 - step.options.top_p)
    remove[..., -step.keep :] = False
    return scores.masked_fill(_unsort(remove, order), NEG_INF)


def min_p(scores: torch.Tensor, step: Step) -> torch.Tensor:
    probs = torch.softmax(scores, dim=-1)
    remove = probs < step.options.min_p * probs.max(dim=-1, keepdim=True)[0]
    order = torch.argsort(scores, descending=True, dim=-1, stable=True)
    remove_sorted = remove.gather(-1, order)
    remove_sorted[..., : step.keep] = False
    return scores.masked_fill(_unsort(remove_sorted, order), NEG_INF)


def typical_p(scores: torch.Tensor, step: Step) -> torch.Tensor:
    normalized = torch.log_softmax(scores, dim=-1)
    entropy = -(normalized * normalized.exp()).nansum(-1, keepdim=True)
    shifted, order = torch.sort((-normalized - entropy).abs(), descending=False, stable=True)
    cumulative = scores.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
    last = (cumulative < step.options.typical_p).sum(dim=1).clamp(max=scores.shape[-1] - 1)
    remove = shifted > shifted.gather(1, last[:, None])
    remove[..., : step.keep] = False
    return scores.masked_fill(_unsort(remove, order), NEG_INF)


def _cut_below(scores: torch.Tensor, threshold: Any, step: Step) -> torch.Tensor:
    """Remove tokens whose probability is below `threshold`, keeping the `keep` best."""
    remove = scores.softmax(dim=-1) < threshold
    kept = torch.topk(scores, min(step.keep, scores.shape[-1]))[0][..., -1, None]
    return scores.masked_fill(remove & (scores < kept), NEG_INF)


def epsilon_cutoff(scores: torch.Tensor, step: Step) -> torch.Tensor:
    return _cut_below(scores, step.options.epsilon_cutoff, step)


def eta_cutoff(scores: torch.Tensor, step: Step) -> torch.Tensor:
    """η-sampling: the cut is min(ε, √ε·exp(-entropy)), entropy as `torch.distributions.Categorical` has it."""
    epsilon = torch.tensor(step.options.eta_cutoff, dtype=scores.dtype, device=scores.device)
    normalized = scores - scores.logsumexp(dim=-1, keepdim=True)
    entropy = -(normalized.clamp(min=torch.finfo(scores.dtype).min) * normalized.softmax(dim=-1)).sum(-1)
    eta = torch.minimum(epsilon, epsilon.sqrt() * torch.exp(-entropy))[..., None]
    return _cut_below(scores, eta, step)


def renormalize_logits(scores: torch.Tensor, step: Step) -> torch.Tensor:
    return scores.log_softmax(dim=-1)


PROCESSORS = {name: globals()[name] for name in LOGITS_PROCESSOR_ORDER}


def process(scores: torch.Tensor, step: Step, names: tuple[str, ...] | None = None) -> torch.Tensor:
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


def with_diversity(step: Step, penalty: torch.Tensor) -> Step:
    return replace(step, diversity=penalty)
