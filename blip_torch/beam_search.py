"""Beam search and group (diverse) beam search over the decoding state of `decoding.py`.

`beam_search` is `transformers` 4.57's vectorised beam search (optionally
sampling the candidates); `group_beam_search` is 4.56's diverse beam search
(`BeamSearchScorer` with one set of finished hypotheses per group, the
Hamming diversity penalty between groups), vectorised over the batch. Each
image keeps its own budget, so a row of a batch gets its single-row result.
`beam_indices` hold, per new token, the row (image * num_beams + beam) whose
scores chose it, in both modes.
"""

from __future__ import annotations

import time

import torch

from blip_core.generation.options import GenerationOptions, SpecialTokens
from blip_core.modeling.outputs import GenerateBeamDecoderOnlyOutput
from blip_torch.decoding import Decoding, is_end
from blip_torch.generation import out_of_time, random_generator
from blip_torch.logits_processors import Step, process, split_at_diversity, with_diversity

NEVER = -1.0e9  # transformers' "never choose this beam" score


def _gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (B, K, ...) gathered along beams by index (B, J) -> (B, J, ...)."""
    shape = index.shape + values.shape[2:]
    return values.gather(1, index.view(*index.shape, *([1] * (values.dim() - 2))).expand(shape))


def _history(running: torch.Tensor, options: GenerationOptions) -> torch.Tensor | None:
    return running.view(-1, running.shape[-1]) if options.needs_history else None


def _candidates(totals: torch.Tensor, count: int, options: GenerationOptions, generator) -> tuple:
    """The `count` best (or, sampling, drawn) continuations of (B, beams * V) totals: (scores, indices)."""
    if options.do_sample:
        index = torch.multinomial(totals.softmax(-1), count, generator=generator)
        return totals.gather(1, index), index
    return torch.topk(totals, count)


def _output(held, count, width, all_scores, all_logits, options):
    """The `count` best finished hypotheses per image, cut to the longest one returned."""
    finished, scores, rows = held["finished"], held["finished_scores"], held["finished_rows"]
    batch = finished.shape[0]
    length = int(held["finished_lengths"][:, :count].max())
    return GenerateBeamDecoderOnlyOutput(
        sequences=finished[:, :count, : width + length].reshape(batch * count, width + length),
        sequences_scores=scores[:, :count].reshape(-1),
        scores=tuple(all_scores) if options.output_scores else None,
        logits=tuple(all_logits) if options.output_logits else None,
        beam_indices=rows[:, :count, :length].reshape(batch * count, length),
    )


def _per_length(scores: torch.Tensor, length, lp: float) -> torch.Tensor:
    """scores / length ** lp, for a length that is an int or a (B, 1) tensor."""
    if isinstance(length, torch.Tensor):
        return scores / length.float() ** lp
    return scores / float(length) ** lp


def _merge(held: dict, new: dict, done: torch.Tensor, blocked: torch.Tensor, beams: int) -> dict:
    """The `beams` best of the finished hypotheses `held` and the candidates `new` that are `done` and not
    `blocked` (both (B, C) bool); `new` holds the same keys but `is_finished`."""
    new = {**new, "is_finished": done}
    new["finished_scores"] = new["finished_scores"] + (blocked | ~done).float() * NEVER
    merged = torch.topk(torch.cat([held["finished_scores"], new["finished_scores"]], 1), beams)[1]
    return {name: _gather(torch.cat([values, new[name]], 1), merged) for name, values in held.items()}


def _improvable(held: dict, best: torch.Tensor, horizon, lp: float) -> torch.Tensor:
    """(B, 1): whether `best` (B, 1) at length `horizon` beats the worst finished hypothesis (or one is missing)."""
    is_finished = held["is_finished"]
    worst = torch.where(
        is_finished, held["finished_scores"].min(1, keepdim=True)[0], torch.full_like(held["finished_scores"], NEVER)
    )
    return (_per_length(best, horizon, lp) > worst).any(-1, keepdim=True)


def _finish(held, new, top, ends, hits, best_running, improvable, width, generated, budget, options) -> tuple:
    """Add this step's finished candidates `new` (scored `top`) to `held`; return it and the new `improvable`.

    new_tokens (4.57): the top `beams` candidates that end or hit the budget, all at one length. whole_sequence
    (4.15): first those among them that end, then the stop check with the best candidate, then (at the budget)
    the `beams` best candidates that do not end, each at its own length (`GenerationOptions.beam_lengths`).
    """
    beams, lp = options.num_beams, options.length_penalty
    ended, cut, horizon = options.beam_lengths(width, generated, budget[:, None])
    top_beams = torch.arange(top.shape[1], device=top.device) < beams
    if not options.whole_sequence:
        full = held["is_finished"].all(-1, keepdim=True) & (options.early_stopping is True)
        scored = {**new, "finished_scores": _per_length(top, ended, lp)}
        held = _merge(held, scored, hits & top_beams, full | ~improvable, beams)
        return held, improvable & _improvable(held, best_running, horizon, lp)
    held = _merge(held, {**new, "finished_scores": _per_length(top, ended, lp)}, ends & top_beams, ~improvable, beams)
    full = held["is_finished"].all(-1, keepdim=True) & (options.early_stopping is True)
    improvable = improvable & _improvable(held, top[:, :1], horizon, lp) & ~full
    cut_off = hits & ~ends & (torch.cumsum((~ends).long(), 1) <= beams)
    held = _merge(held, {**new, "finished_scores": _per_length(top, cut, lp)}, cut_off, ~improvable, beams)
    return held, improvable


def beam_search(
    state: Decoding, prompt: torch.Tensor, logits: torch.Tensor, options: GenerationOptions, tokens: SpecialTokens
) -> GenerateBeamDecoderOnlyOutput:
    """`transformers`' vectorised beam search (optionally sampling the candidates); hypotheses scored by
    `options.beam_length_rule` (4.57's by default, the original BLIP's 4.15 rule on request)."""
    began = time.monotonic()
    batch, beams = prompt.shape[0], options.num_beams
    state.expand(beams)
    logits = logits.repeat_interleave(beams, 0)
    device, width, vocab = prompt.device, prompt.shape[1], logits.shape[-1]
    keep = tokens.keep * beams
    budget = state.max_new.view(batch, beams)[:, 0]  # (B,) new-token budget per image
    steps = int(budget.max())
    running = torch.full((batch, beams, width + steps), tokens.fill, dtype=torch.long, device=device)
    running[:, :, :width] = prompt[:, None]
    running_rows = torch.full((batch, beams, steps), -1, dtype=torch.int32, device=device)
    running_scores = torch.zeros(batch, beams, device=device)
    running_scores[:, 1:] = NEVER
    held = {
        "finished": running.clone(),
        "finished_scores": torch.full((batch, beams), NEVER, device=device),
        "finished_lengths": torch.zeros(batch, beams, dtype=torch.long, device=device),
        "finished_rows": running_rows.clone(),
        "is_finished": torch.zeros(batch, beams, dtype=torch.bool, device=device),
    }
    improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)
    offsets = torch.arange(batch, device=device)[:, None] * beams
    generator, all_scores, all_logits = random_generator(options, device), [], []
    for generated in range(steps):
        cursor = width + generated
        step = Step(state, generated, options, tokens, _history(running, options), cursor)
        scores = process(torch.log_softmax(logits, -1), step)
        if options.output_scores:
            all_scores.append(scores)
        if options.output_logits:
            all_logits.append(logits)
        totals = (scores.view(batch, beams, vocab) + running_scores[:, :, None]).view(batch, beams * vocab)
        top, index = _candidates(totals, keep, options, generator)
        source, picked = index // vocab, index % vocab
        candidates = _gather(running, source)
        candidates[:, :, cursor] = picked
        candidate_rows = _gather(running_rows, source)
        candidate_rows[:, :, generated] = (source + offsets).int()
        ends = is_end(picked, tokens)
        hits = ends | (generated + 1 >= budget[:, None]) | out_of_time(options, began)
        # The best candidates that go on.
        going = top + hits.float() * NEVER
        pick = torch.topk(going, beams)[1]
        running, running_scores = _gather(candidates, pick), _gather(going, pick)
        parents, running_rows = _gather(source, pick), _gather(candidate_rows, pick)
        # The best finished hypotheses so far; can anything still improve?
        new = {"finished": candidates, "finished_lengths": torch.full_like(picked, generated + 1)}
        new["finished_rows"] = candidate_rows
        held, improvable = _finish(
            held, new, top, ends, hits, running_scores[:, :1], improvable, width, generated, budget, options
        )
        open_beams = not (bool(held["is_finished"].all()) and options.early_stopping is True)
        if not (bool(improvable.any()) and open_beams and not bool(hits.all())):
            break
        state.reorder((parents + offsets).view(-1))
        chosen = running[:, :, cursor].reshape(-1)
        state.mark(chosen)
        logits = state.step(chosen, generated + 1)
    return _output(held, options.num_return_sequences, width, all_scores, all_logits, options)


def _diversity(current: torch.Tensor, upto: int, beams: int, vocab: int, penalty: float) -> torch.Tensor:
    """(B * beams, V): `penalty` times how often each token was chosen this step by the first `upto` beams."""
    counts = torch.zeros(current.shape[0], vocab, device=current.device)
    counts.scatter_add_(1, current[:, :upto], torch.ones_like(current[:, :upto], dtype=counts.dtype))
    return (penalty * counts).repeat_interleave(beams, 0)


def _is_done(best, count, worst, size, width, generated, budget, options) -> torch.Tensor:
    """`BeamHypotheses.is_done`: the group holds `size` hypotheses none of its beams can still beat."""
    full = count == size
    if options.early_stopping is True:
        return full
    horizon = options.beam_lengths(width, generated, budget)[2]
    return full & (worst >= _per_length(best, horizon, options.length_penalty))


class Hypotheses:
    """The finished hypotheses of every (image, group): (B, G, size) scores, sequences, lengths, rows."""

    def __init__(self, batch: int, groups: int, size: int, running: torch.Tensor, rows: torch.Tensor) -> None:
        self.size = size
        self.sequences = running.new_zeros((batch, groups, size, running.shape[-1])) + running[:, :1, None]
        self.rows = rows.new_full((batch, groups, size, rows.shape[-1]), -1)
        self.scores = torch.full((batch, groups, size), float("-inf"), device=running.device)
        self.lengths = torch.zeros((batch, groups, size), dtype=torch.long, device=running.device)
        self.count = torch.zeros((batch, groups), dtype=torch.long, device=running.device)

    def add(self, group: int, sequences, rows, scores, lengths, accepted) -> None:
        """Keep the `size` best of the group's hypotheses and the `accepted` candidates (B, C)."""
        scores = torch.where(accepted, scores, float("-inf"))
        merged = torch.topk(torch.cat([self.scores[:, group], scores], 1), self.size)[1]
        for name, new in (("sequences", sequences), ("rows", rows), ("scores", scores), ("lengths", lengths)):
            held = getattr(self, name)
            held[:, group] = _gather(torch.cat([held[:, group], new], 1), merged)
        self.count[:, group] = (self.count[:, group] + accepted.sum(1)).clamp(max=self.size)

    def worst(self, group: int) -> torch.Tensor:
        return self.scores[:, group].min(1)[0]

    def best(self, count: int) -> tuple[torch.Tensor, ...]:
        """The `count` best hypotheses of each image over all its groups."""
        batch = self.scores.shape[0]
        flat = [getattr(self, name).view(batch, -1, *getattr(self, name).shape[3:]) for name in _HYPOTHESIS_FIELDS]
        order = torch.topk(flat[2], count)[1]
        return tuple(_gather(values, order) for values in flat)


_HYPOTHESIS_FIELDS = ("sequences", "rows", "scores", "lengths")


def group_beam_search(
    state: Decoding, prompt: torch.Tensor, logits: torch.Tensor, options: GenerationOptions, tokens: SpecialTokens
) -> GenerateBeamDecoderOnlyOutput:
    """Diverse beam search: `num_beam_groups` groups of beams, each group penalised for the tokens the
    groups before it chose at the same step (`diversity_penalty`), each with its own finished hypotheses."""
    began = time.monotonic()
    batch, beams, groups = prompt.shape[0], options.num_beams, options.num_beam_groups
    size, lp = beams // groups, options.length_penalty
    state.expand(beams)
    logits = logits.repeat_interleave(beams, 0)
    device, width, vocab = prompt.device, prompt.shape[1], logits.shape[-1]
    budget = state.max_new.view(batch, beams)[:, 0]
    steps = int(budget.max())
    running = torch.full((batch, beams, width + steps), tokens.pad, dtype=torch.long, device=device)
    running[:, :, :width] = prompt[:, None]
    running_rows = torch.full((batch, beams, steps), -1, dtype=torch.int32, device=device)
    beam_scores = torch.full((batch, beams), NEVER, device=device)
    beam_scores[:, ::size] = 0.0
    hypotheses = Hypotheses(batch, groups, size, running, running_rows)
    done = torch.zeros(batch, groups, dtype=torch.bool, device=device)
    offsets = torch.arange(batch, device=device)[:, None] * beams
    first_end = tokens.eos[0]
    ranks = torch.arange(tokens.keep * size, device=device)
    before, after = split_at_diversity(options)
    all_scores, all_logits = [], []
    for generated in range(steps):
        cursor = width + generated
        step = Step(state, generated, options, tokens, _history(running, options), cursor)
        shared = process(torch.log_softmax(logits, -1), step, before)
        current = torch.full((batch, beams), tokens.pad, dtype=torch.long, device=device)
        parents, new_scores = torch.zeros_like(current), torch.zeros_like(beam_scores)
        processed = torch.zeros_like(shared)
        last = (generated + 1 >= budget) | out_of_time(options, began)
        ended, cut, _ = options.beam_lengths(width, generated, budget)
        for group in range(groups):
            low, high = group * size, (group + 1) * size
            penalty = _diversity(current, low, beams, vocab, options.diversity_penalty)
            group_scores = process(shared, with_diversity(step, penalty), after).view(batch, beams, vocab)[:, low:high]
            processed.view(batch, beams, vocab)[:, low:high] = group_scores
            totals = (group_scores + beam_scores[:, low:high, None]).view(batch, size * vocab)
            top, index = torch.topk(totals, tokens.keep * size)
            source, picked = index // vocab, index % vocab
            ends = is_end(picked, tokens)
            candidates = _gather(running[:, low:high], source)
            candidates[:, :, cursor] = torch.where(ends, first_end, picked)
            rows = _gather(running_rows[:, low:high], source)
            rows[:, :, generated] = (source + low + offsets).int()
            lengths = torch.full_like(picked, generated + 1)
            accepted = ends & (ranks < size) & ~done[:, group : group + 1]
            hypotheses.add(group, candidates, rows, _per_length(top, ended, lp), lengths, accepted)
            # The group's beams go on with its best candidates that do not end; finished groups idle on pad.
            pick = torch.topk(top + ends.float() * NEVER, size)[1]
            idle = done[:, group : group + 1]
            chosen = torch.where(idle, tokens.pad, _gather(picked, pick))
            new_scores[:, low:high] = torch.where(idle, 0.0, _gather(top, pick))
            parents[:, low:high] = torch.where(idle, torch.arange(size, device=device), _gather(source, pick)) + low
            current[:, low:high] = chosen
            best, worst = top[:, 0], hypotheses.worst(group)
            done[:, group] |= _is_done(best, hypotheses.count[:, group], worst, size, width, generated, budget, options)
        if options.output_scores:
            all_scores.append(processed)
        if options.output_logits:
            all_logits.append(logits)
        running, running_rows = _gather(running, parents), _gather(running_rows, parents)
        running[:, :, cursor] = current
        running_rows[:, :, generated] = (parents + offsets).int()
        beam_scores = new_scores
        _finish_at_budget(hypotheses, done, last, running, running_rows, beam_scores, cut, generated, options, size)
        if bool(done.all()):
            break
        state.reorder((parents + offsets).view(-1))
        chosen = current.view(-1)
        state.mark(chosen)
        logits = state.step(chosen, generated + 1)
    sequences, rows, scores, lengths = hypotheses.best(options.num_return_sequences)
    found = {"finished": sequences, "finished_rows": rows, "finished_scores": scores, "finished_lengths": lengths}
    return _output(found, options.num_return_sequences, width, all_scores, all_logits, options)


def _finish_at_budget(hypotheses, done, last, running, running_rows, beam_scores, cut, generated, options, size):
    """Images out of budget (or time): their unfinished groups' beams become hypotheses (`finalize`), scored at
    length `cut`."""
    if not bool(last.any()):
        return
    lp = options.length_penalty
    for group in range(done.shape[1]):
        low, high = group * size, (group + 1) * size
        accepted = (last & ~done[:, group])[:, None].expand(-1, size)
        lengths = torch.full_like(beam_scores[:, low:high], generated + 1, dtype=torch.long)
        scores = _per_length(beam_scores[:, low:high], cut, lp)
        hypotheses.add(group, running[:, low:high], running_rows[:, low:high], scores, lengths, accepted)
    done |= last[:, None]
