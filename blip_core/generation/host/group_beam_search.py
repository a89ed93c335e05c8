"""Group (diverse) beam search in NumPy: the twin of `blip_torch.beam_search.group_beam_search`.

`transformers` 4.56's diverse beam search (`BeamSearchScorer` with one set of
finished hypotheses per group, the Hamming diversity penalty between groups),
vectorised over the batch; each image keeps its own budget.
"""

from __future__ import annotations

import time

import numpy as np

from blip_core.generation.host.beam_search import NEVER, _gather, _history, _output, _per_length, _start_beams, topk
from blip_core.generation.host.decoding import Decoding, is_end
from blip_core.generation.host.greedy import out_of_time
from blip_core.generation.host.logits_processors import Step, log_softmax, process, split_at_diversity, with_diversity
from blip_core.generation.options import GenerationOptions, SpecialTokens
from blip_core.modeling.outputs import GenerateBeamDecoderOnlyOutput

_FIELDS = ("sequences", "rows", "scores", "lengths")


class Hypotheses:
    """The finished hypotheses of every (image, group): (B, G, size) scores, sequences, lengths, rows."""

    def __init__(self, batch: int, groups: int, size: int, running: np.ndarray, rows: np.ndarray) -> None:
        self.size = size
        self.sequences = np.zeros((batch, groups, size, running.shape[-1]), running.dtype) + running[:, :1, None]
        self.rows = np.full((batch, groups, size, rows.shape[-1]), -1, rows.dtype)
        self.scores = np.full((batch, groups, size), -np.inf, np.float32)
        self.lengths = np.zeros((batch, groups, size), np.int64)
        self.count = np.zeros((batch, groups), np.int64)

    def add(self, group: int, sequences, rows, scores, lengths, accepted) -> None:
        """Keep the `size` best of the group's hypotheses and the `accepted` candidates (B, C)."""
        scores = np.where(accepted, scores, np.float32(-np.inf))
        merged = topk(np.concatenate([self.scores[:, group], scores], 1), self.size)[1]
        for name, new in (("sequences", sequences), ("rows", rows), ("scores", scores), ("lengths", lengths)):
            held = getattr(self, name)
            held[:, group] = _gather(np.concatenate([held[:, group], new], 1), merged)
        self.count[:, group] = np.minimum(self.count[:, group] + accepted.sum(1), self.size)

    def worst(self, group: int) -> np.ndarray:
        return self.scores[:, group].min(1)

    def best(self, count: int) -> tuple[np.ndarray, ...]:
        """The `count` best hypotheses of each image over all its groups."""
        batch = self.scores.shape[0]
        flat = [getattr(self, name).reshape(batch, -1, *getattr(self, name).shape[3:]) for name in _FIELDS]
        order = topk(flat[2], count)[1]
        return tuple(_gather(values, order) for values in flat)


def _diversity(current: np.ndarray, upto: int, beams: int, vocab: int, penalty: float) -> np.ndarray:
    """(B * beams, V) float32: `penalty` times how often each token was chosen this step by the first `upto`
    beams."""
    counts = np.zeros((current.shape[0], vocab), np.float32)
    rows = np.broadcast_to(np.arange(current.shape[0])[:, None], current[:, :upto].shape)
    np.add.at(counts, (rows, current[:, :upto]), 1.0)
    return np.repeat(penalty * counts, beams, 0)


def _is_done(best, count, worst, size, width, generated, budget, options) -> np.ndarray:
    """`BeamHypotheses.is_done`: the group holds `size` hypotheses none of its beams can still beat."""
    full = count == size
    if options.early_stopping is True:
        return full
    horizon = options.beam_lengths(width, generated, budget)[2]
    return full & (worst >= _per_length(best, horizon, options.length_penalty))


def _group_step(group, context, shared, step, current, parents, new_scores, processed) -> None:
    """One group's choice at one step: its hypotheses, its beams' tokens, parents and scores (in place)."""
    (batch, beams, size, vocab, width, generated, budget, ended, options, tokens, arrays) = context
    hypotheses, running, running_rows, beam_scores, done, offsets = arrays
    low, high = group * size, (group + 1) * size
    penalty = _diversity(current, low, beams, vocab, options.diversity_penalty)
    after = split_at_diversity(options)[1]
    group_scores = process(shared, with_diversity(step, penalty), after).reshape(batch, beams, vocab)[:, low:high]
    processed[:, low:high] = group_scores
    totals = (group_scores + beam_scores[:, low:high, None]).reshape(batch, size * vocab)
    top, index = topk(totals, tokens.keep * size)
    source, picked = index // vocab, index % vocab
    ends = is_end(picked, tokens)
    candidates = _gather(running[:, low:high], source)
    candidates[:, :, width + generated] = np.where(ends, tokens.eos[0], picked)
    rows = _gather(running_rows[:, low:high], source)
    rows[:, :, generated] = (source + low + offsets).astype(np.int32)
    lengths = np.full_like(picked, generated + 1)
    accepted = ends & (np.arange(tokens.keep * size) < size) & ~done[:, group : group + 1]
    hypotheses.add(group, candidates, rows, _per_length(top, ended, options.length_penalty), lengths, accepted)
    # The group's beams go on with its best candidates that do not end; finished groups idle on pad.
    pick = topk(top + ends.astype(np.float32) * NEVER, size)[1]
    idle = done[:, group : group + 1]
    current[:, low:high] = np.where(idle, tokens.pad, _gather(picked, pick))
    new_scores[:, low:high] = np.where(idle, np.float32(0.0), _gather(top, pick))
    parents[:, low:high] = np.where(idle, np.arange(size), _gather(source, pick)) + low
    best, worst = top[:, 0], hypotheses.worst(group)
    done[:, group] |= _is_done(best, hypotheses.count[:, group], worst, size, width, generated, budget, options)


def group_beam_search(
    state: Decoding, prompt: np.ndarray, logits: np.ndarray, options: GenerationOptions, tokens: SpecialTokens
) -> GenerateBeamDecoderOnlyOutput:
    """Diverse beam search: `num_beam_groups` groups of beams, each group penalised for the tokens the
    groups before it chose at the same step (`diversity_penalty`), each with its own finished hypotheses."""
    began = time.monotonic()
    batch, beams, groups, width = prompt.shape[0], options.num_beams, options.num_beam_groups, prompt.shape[1]
    size = beams // groups
    logits, budget, steps, running, running_rows = _start_beams(state, prompt, logits, beams, tokens.pad)
    vocab = logits.shape[-1]
    beam_scores = np.full((batch, beams), NEVER, np.float32)
    beam_scores[:, ::size] = 0.0
    hypotheses = Hypotheses(batch, groups, size, running, running_rows)
    done = np.zeros((batch, groups), bool)
    offsets = np.arange(batch)[:, None] * beams
    before = split_at_diversity(options)[0]
    all_scores, all_logits = [], []
    for generated in range(steps):
        cursor = width + generated
        step = Step(state, generated, options, tokens, _history(running, options), cursor)
        shared = process(log_softmax(logits), step, before)
        current = np.full((batch, beams), tokens.pad, np.int64)
        parents, new_scores = np.zeros_like(current), np.zeros_like(beam_scores)
        processed = np.zeros((batch, beams, vocab), shared.dtype)
        last = (generated + 1 >= budget) | out_of_time(options, began)
        ended, cut, _ = options.beam_lengths(width, generated, budget)
        context = (batch, beams, size, vocab, width, generated, budget, ended, options, tokens)
        held = (hypotheses, running, running_rows, beam_scores, done, offsets)
        for group in range(groups):
            _group_step(group, (*context, held), shared, step, current, parents, new_scores, processed)
        if options.output_scores:
            all_scores.append(processed.reshape(batch * beams, vocab))
        if options.output_logits:
            all_logits.append(logits)
        running, running_rows = _gather(running, parents), _gather(running_rows, parents)
        running[:, :, cursor] = current
        running_rows[:, :, generated] = (parents + offsets).astype(np.int32)
        beam_scores = new_scores
        _finish_at_budget(hypotheses, done, last, running, running_rows, beam_scores, cut, generated, options, size)
        if done.all():
            break
        state.reorder((parents + offsets).reshape(-1))
        chosen = current.reshape(-1)
        state.mark(chosen)
        logits = state.step(chosen, generated + 1)
    sequences, rows, scores, lengths = hypotheses.best(options.num_return_sequences)
    found = {"finished": sequences, "finished_rows": rows, "finished_scores": scores, "finished_lengths": lengths}
    return _output(found, options.num_return_sequences, width, all_scores, all_logits, options)


def _finish_at_budget(hypotheses, done, last, running, running_rows, beam_scores, cut, generated, options, size):
    """Images out of budget (or time): their unfinished groups' beams become hypotheses, scored at length
    `cut`."""
    if not last.any():
        return
    for group in range(done.shape[1]):
        low, high = group * size, (group + 1) * size
        accepted = np.broadcast_to((last & ~done[:, group])[:, None], (last.shape[0], size))
        lengths = np.full(beam_scores[:, low:high].shape, generated + 1, np.int64)
        scores = _per_length(beam_scores[:, low:high], cut, options.length_penalty)
        hypotheses.add(group, running[:, low:high], running_rows[:, low:high], scores, lengths, accepted)
    done |= last[:, None]
