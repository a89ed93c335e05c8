"""Beam search and group (diverse) beam search over the decoding state of `decoding.py`.
Twin of `blip_torch/beam_search.py`, with the same rules and the same ids.

Forced difference: each search is one `tf.while_loop` over static shapes inside
the compiled decoding function; a step after the search has ended is skipped by
`tf.cond`, and the finished hypotheses are cut to their length afterwards.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from blip_core.generation.options import GenerationOptions, SpecialTokens
from blip_tf.decoding import TFDecoding, is_end, record, set_column, step_buffers
from blip_tf.logits_processors import TFStep, process, split_at_diversity, with_diversity

NEVER = -1.0e9  # transformers' "never choose this beam" score


def _gather(values: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """values (B, K, ...) gathered along beams by index (B, J) -> (B, J, ...)."""
    return tf.gather(values, index, batch_dims=1)


def _history(running: tf.Tensor, options: GenerationOptions) -> tf.Tensor | None:
    return tf.reshape(running, (-1, running.shape[-1])) if options.needs_history else None


def _candidates(totals: tf.Tensor, count: int, options: GenerationOptions, seed, generated) -> tuple:
    """The `count` best (or, sampling, drawn) continuations of (B, beams * V) totals: (scores, indices)."""
    if options.do_sample:  # sampling without replacement: Gumbel top-k (torch.multinomial has no XLA twin)
        uniform = tf.random.stateless_uniform(tf.shape(totals), tf.stack([seed, generated]), 1e-20, 1.0)
        index = tf.math.top_k(tf.nn.log_softmax(totals, axis=-1) - tf.math.log(-tf.math.log(uniform)), count).indices
        top = tf.gather(totals, index, batch_dims=1)
        order = tf.argsort(top, axis=-1, direction="DESCENDING", stable=True)
        return tf.gather(top, order, batch_dims=1), tf.gather(index, order, batch_dims=1)
    return tf.math.top_k(totals, count)


def _advance(state: TFDecoding, carried, parents, offsets, chosen, generated):
    """Reorder the cache to the surviving beams and feed their tokens: (logits, carried)."""
    state.restore(carried)
    state.reorder(tf.reshape(parents + offsets, (-1,)))
    state.mark(chosen)
    return state.step(chosen, generated + 1), state.carry()


def _per_length(scores: tf.Tensor, length, lp: float) -> tf.Tensor:
    """scores / length ** lp, for a length that is an int tensor (scalar or (B, 1))."""
    return scores / tf.cast(length, tf.float32) ** lp


def _merge(held: dict, new: dict, done: tf.Tensor, blocked: tf.Tensor, beams: int) -> dict:
    """The `beams` best of the finished hypotheses `held` and the candidates `new` that are `done` and not
    `blocked` (both (B, C) bool); `new` holds the same keys but `is_finished`."""
    new = {**new, "is_finished": done}
    new["finished_scores"] = new["finished_scores"] + tf.cast(blocked | ~done, tf.float32) * NEVER
    merged = tf.math.top_k(tf.concat([held["finished_scores"], new["finished_scores"]], 1), beams).indices
    return {name: _gather(tf.concat([values, new[name]], 1), merged) for name, values in held.items()}


def _improvable(held: dict, best: tf.Tensor, horizon, lp: float) -> tf.Tensor:
    """(B, 1): whether `best` (B, 1) at length `horizon` beats the worst finished hypothesis (or one is missing)."""
    is_finished = held["is_finished"]
    worst = tf.where(is_finished, tf.reduce_min(held["finished_scores"], axis=1, keepdims=True), NEVER)
    return tf.reduce_any(_per_length(best, horizon, lp) > worst, axis=-1, keepdims=True)


def _finish(held, new, top, ends, hits, best_running, improvable, width, generated, budget, options) -> tuple:
    """Add this step's finished candidates `new` (scored `top`) to `held`; return it and the new `improvable`.

    new_tokens (4.57): the top `beams` candidates that end or hit the budget, all at one length. whole_sequence
    (4.15): first those among them that end, then the stop check with the best candidate, then (at the budget)
    the `beams` best candidates that do not end, each at its own length (`GenerationOptions.beam_lengths`).
    """
    beams, lp = options.num_beams, options.length_penalty
    ended, cut, horizon = options.beam_lengths(width, generated, budget[:, None])
    top_beams = tf.range(top.shape[1]) < beams
    if not options.whole_sequence:
        full = tf.reduce_all(held["is_finished"], axis=-1, keepdims=True) & (options.early_stopping is True)
        scored = {**new, "finished_scores": _per_length(top, ended, lp)}
        held = _merge(held, scored, hits & top_beams, full | ~improvable, beams)
        return held, improvable & _improvable(held, best_running, horizon, lp)
    held = _merge(held, {**new, "finished_scores": _per_length(top, ended, lp)}, ends & top_beams, ~improvable, beams)
    full = tf.reduce_all(held["is_finished"], axis=-1, keepdims=True) & (options.early_stopping is True)
    improvable = improvable & _improvable(held, top[:, :1], horizon, lp) & ~full
    cut_off = hits & ~ends & (tf.cumsum(tf.cast(~ends, tf.int32), axis=1) <= beams)
    held = _merge(held, {**new, "finished_scores": _per_length(top, cut, lp)}, cut_off, ~improvable, beams)
    return held, improvable


def beam_search(
    state: TFDecoding,
    prompt: tf.Tensor,
    logits: tf.Tensor,
    options: GenerationOptions,
    tokens: SpecialTokens,
    seed: tf.Tensor,
) -> dict[str, tf.Tensor]:
    """`transformers`' vectorised beam search (optionally sampling the candidates); hypotheses scored by
    `options.beam_length_rule` (4.57's by default, the original BLIP's 4.15 rule on request)."""
    batch, beams = tf.shape(prompt)[0], options.num_beams
    state.expand(beams)
    logits = tf.repeat(logits, beams, axis=0)
    width, vocab, keep = prompt.shape[1], logits.shape[-1], tokens.keep * beams
    budget = tf.reshape(state.max_new, (-1, beams))[:, 0]  # (B,) new-token budget per image
    steps = state.cache.capacity - width
    running = tf.concat(
        [tf.repeat(prompt[:, None], beams, axis=1), tf.fill((batch, beams, steps), tokens.fill)], axis=2
    )
    offsets = tf.range(batch)[:, None] * beams

    def body(loop):
        state.restore(loop["carried"])
        generated, running, running_rows = loop["generated"], loop["running"], loop["running_rows"]
        cursor = width + generated
        step = TFStep(state, generated, options, tokens, _history(running, options), cursor)
        scores = process(tf.nn.log_softmax(loop["logits"], axis=-1), step)
        out = {**loop, **record(loop, generated, scores, loop["logits"])}
        totals = tf.reshape(
            tf.reshape(scores, (batch, beams, vocab)) + loop["running_scores"][:, :, None], (batch, beams * vocab)
        )
        top, index = _candidates(totals, keep, options, seed, generated)
        source, picked = index // vocab, index % vocab
        candidates = set_column(_gather(running, source), cursor, picked)
        candidate_rows = set_column(_gather(running_rows, source), generated, source + offsets)
        ends = is_end(picked, tokens)
        hits = ends | (generated + 1 >= budget[:, None])
        # The best candidates that go on.
        going = top + tf.cast(hits, tf.float32) * NEVER
        pick = tf.math.top_k(going, beams).indices
        out["running"], out["running_scores"] = _gather(candidates, pick), _gather(going, pick)
        parents, out["running_rows"] = _gather(source, pick), _gather(candidate_rows, pick)
        # The best finished hypotheses so far; can anything still improve?
        new = {"finished": candidates, "finished_lengths": tf.fill(tf.shape(picked), generated + 1)}
        new["finished_rows"] = candidate_rows
        held = {name: loop[name] for name in _HELD}
        best_running, improvable = out["running_scores"][:, :1], loop["improvable"]
        held, improvable = _finish(
            held, new, top, ends, hits, best_running, improvable, width, generated, budget, options
        )
        out.update(held)
        open_beams = ~(tf.reduce_all(held["is_finished"]) & (options.early_stopping is True))
        done = ~(tf.reduce_any(improvable) & open_beams & ~tf.reduce_all(hits))
        before = state.carry()  # both branches start from here (tf.cond traces them one after the other)
        chosen = tf.reshape(tf.gather(out["running"], cursor, axis=2), (-1,))
        out["logits"], out["carried"] = tf.cond(
            done,
            lambda: (loop["logits"], before),
            lambda: _advance(state, before, parents, offsets, chosen, generated),
        )
        out.update(generated=generated + 1, improvable=improvable, done=done)
        return (out,)

    loop = {
        "generated": tf.constant(0),
        "logits": logits,
        "running": running,
        "running_scores": tf.tile(tf.constant([[0.0] + [NEVER] * (beams - 1)]), (batch, 1)),
        "running_rows": tf.fill((batch, beams, steps), -1),
        "finished": running,
        "finished_scores": tf.fill((batch, beams), NEVER),
        "finished_lengths": tf.zeros((batch, beams), tf.int32),
        "finished_rows": tf.fill((batch, beams, steps), -1),
        "is_finished": tf.zeros((batch, beams), tf.bool),
        "improvable": tf.ones((batch, 1), tf.bool),
        "done": tf.constant(False),
        "carried": state.carry(),
        **step_buffers(options, steps, batch * beams, vocab),
    }
    (out,) = tf.while_loop(
        lambda loop: (loop["generated"] < steps) & ~loop["done"], body, (loop,), maximum_iterations=steps
    )
    return _output(out, options.num_return_sequences)


_HELD = ("finished", "finished_scores", "finished_lengths", "finished_rows", "is_finished")


def _output(out: dict[str, tf.Tensor], count: int) -> dict[str, tf.Tensor]:
    """The `count` best finished hypotheses per image (uncut: `generation.assemble` cuts them)."""
    kept = {name: out[name][:, :count] for name in ("finished", "finished_scores", "finished_lengths", "finished_rows")}
    return kept | {key: out[key] for key in ("generated", "scores", "raw_logits") if key in out}


def _diversity(current: tf.Tensor, upto: int, beams: int, vocab: int, penalty: float) -> tf.Tensor:
    """(B * beams, V): `penalty` times how often each token was chosen this step by the first `upto` beams."""
    counts = tf.reduce_sum(tf.one_hot(current[:, :upto], vocab), axis=1)
    return tf.repeat(penalty * counts, beams, axis=0)


def _is_done(best, count, worst, size, width, generated, budget, options) -> tf.Tensor:
    """`BeamHypotheses.is_done`: the group holds `size` hypotheses none of its beams can still beat."""
    full = count == size
    if options.early_stopping is True:
        return full
    horizon = options.beam_lengths(width, generated, budget)[2]
    return full & (worst >= _per_length(best, horizon, options.length_penalty))


class TFHypotheses:
    """The finished hypotheses of every (image, group): (B, G, size) scores, sequences, lengths, rows.

    Forced difference: the fields live in the loop's state dict (`held`), not on the object.
    """

    def __init__(self, batch: Any, groups: int, size: int, running: tf.Tensor, rows: tf.Tensor) -> None:
        self.size = size
        self.held = {
            "sequences": tf.tile(running[:, :1, None], (1, groups, size, 1)),
            "rows": tf.fill((batch, groups, size, rows.shape[-1]), -1),
            "scores": tf.fill((batch, groups, size), float("-inf")),
            "lengths": tf.zeros((batch, groups, size), tf.int32),
            "count": tf.zeros((batch, groups), tf.int32),
        }

    def add(self, group: int, sequences, rows, scores, lengths, accepted) -> None:
        """Keep the `size` best of the group's hypotheses and the `accepted` candidates (B, C)."""
        scores = tf.where(accepted, scores, float("-inf"))
        merged = tf.math.top_k(tf.concat([self.held["scores"][:, group], scores], 1), self.size).indices
        for name, new in (("sequences", sequences), ("rows", rows), ("scores", scores), ("lengths", lengths)):
            kept = _gather(tf.concat([self.held[name][:, group], new], 1), merged)
            self.held[name] = _set_group(self.held[name], group, kept)
        count = tf.minimum(self.held["count"][:, group] + tf.reduce_sum(tf.cast(accepted, tf.int32), 1), self.size)
        self.held["count"] = _set_group(self.held["count"], group, count)

    def worst(self, group: int) -> tf.Tensor:
        return tf.reduce_min(self.held["scores"][:, group], axis=1)

    def best(self, count: int) -> tuple[tf.Tensor, ...]:
        """The `count` best hypotheses of each image over all its groups."""
        flat = [_merge_groups(self.held[name]) for name in _HYPOTHESIS_FIELDS]
        order = tf.math.top_k(flat[2], count).indices
        return tuple(_gather(values, order) for values in flat)


_HYPOTHESIS_FIELDS = ("sequences", "rows", "scores", "lengths")


def _set_group(values: tf.Tensor, group: int, new: tf.Tensor) -> tf.Tensor:
    """values (B, G, ...) with group `group` replaced by new (B, ...)."""
    return tf.concat([values[:, :group], new[:, None], values[:, group + 1 :]], axis=1)


def _merge_groups(values: tf.Tensor) -> tf.Tensor:
    """(B, G, size, ...) -> (B, G * size, ...)."""
    shape = tf.concat([tf.shape(values)[:1], [-1], tf.shape(values)[3:]], axis=0)
    return tf.reshape(values, shape)


def _set_beams(values: tf.Tensor, low: int, new: tf.Tensor) -> tf.Tensor:
    """values (B, K, ...) with beams low .. low + new.shape[1] replaced by new."""
    return tf.concat([values[:, :low], new, values[:, low + new.shape[1] :]], axis=1)


def group_beam_search(
    state: TFDecoding,
    prompt: tf.Tensor,
    logits: tf.Tensor,
    options: GenerationOptions,
    tokens: SpecialTokens,
    seed: tf.Tensor,
) -> dict[str, tf.Tensor]:
    """Diverse beam search: `num_beam_groups` groups of beams, each group penalised for the tokens the
    groups before it chose at the same step (`diversity_penalty`), each with its own finished hypotheses."""
    batch, beams, groups = tf.shape(prompt)[0], options.num_beams, options.num_beam_groups
    size, lp = beams // groups, options.length_penalty
    state.expand(beams)
    logits = tf.repeat(logits, beams, axis=0)
    width, vocab = prompt.shape[1], logits.shape[-1]
    budget = tf.reshape(state.max_new, (-1, beams))[:, 0]
    steps = state.cache.capacity - width
    running = tf.concat([tf.repeat(prompt[:, None], beams, axis=1), tf.fill((batch, beams, steps), tokens.pad)], 2)
    first_scores = [0.0 if beam % size == 0 else NEVER for beam in range(beams)]
    offsets = tf.range(batch)[:, None] * beams
    ranks = tf.range(tokens.keep * size)
    before_names, after_names = split_at_diversity(options)
    hypotheses = TFHypotheses(batch, groups, size, running, tf.fill((batch, beams, steps), -1))

    def body(loop):
        state.restore(loop["carried"])
        hypotheses.held = dict(loop["hypotheses"])
        generated, running, running_rows = loop["generated"], loop["running"], loop["running_rows"]
        cursor, beam_scores, done = width + generated, loop["beam_scores"], loop["group_done"]
        step = TFStep(state, generated, options, tokens, _history(running, options), cursor)
        shared = process(tf.nn.log_softmax(loop["logits"], axis=-1), step, before_names)
        current = tf.fill((batch, 0), 0)
        parents, new_scores, processed = [], [], []
        last = generated + 1 >= budget
        ended, cut, _ = options.beam_lengths(width, generated, budget)
        for group in range(groups):
            low, high = group * size, (group + 1) * size
            penalty = _diversity(current, low, beams, vocab, options.diversity_penalty)
            full_scores = process(shared, with_diversity(step, penalty), after_names)
            group_scores = tf.reshape(full_scores, (batch, beams, vocab))[:, low:high]
            processed.append(group_scores)
            totals = tf.reshape(group_scores + beam_scores[:, low:high, None], (batch, size * vocab))
            top, index = tf.math.top_k(totals, tokens.keep * size)
            source, picked = index // vocab, index % vocab
            ends = is_end(picked, tokens)
            candidates = set_column(
                _gather(running[:, low:high], source), cursor, tf.where(ends, tokens.eos[0], picked)
            )
            rows = set_column(_gather(running_rows[:, low:high], source), generated, source + low + offsets)
            lengths = tf.fill(tf.shape(picked), generated + 1)
            accepted = ends & (ranks < size) & ~done[:, group : group + 1]
            hypotheses.add(group, candidates, rows, _per_length(top, ended, lp), lengths, accepted)
            # The group's beams go on with its best candidates that do not end; finished groups idle on pad.
            pick = tf.math.top_k(top + tf.cast(ends, tf.float32) * NEVER, size).indices
            idle = done[:, group : group + 1]
            chosen = tf.where(idle, tokens.pad, _gather(picked, pick))
            new_scores.append(tf.where(idle, 0.0, _gather(top, pick)))
            parents.append(tf.where(idle, tf.range(size)[None, :], _gather(source, pick)) + low)
            current = tf.concat([current, chosen], axis=1)
            best, worst = top[:, 0], hypotheses.worst(group)
            count = hypotheses.held["count"][:, group]
            ended_group = _is_done(best, count, worst, size, width, generated, budget, options)
            done = _set_group(done, group, done[:, group] | ended_group)
        parents, beam_scores = tf.concat(parents, 1), tf.concat(new_scores, 1)
        scores = tf.reshape(tf.concat(processed, 1), (-1, vocab))
        out = {**loop, **record(loop, generated, scores, loop["logits"])}
        running = set_column(_gather(running, parents), cursor, current)
        running_rows = set_column(_gather(running_rows, parents), generated, parents + offsets)
        done = _finish_at_budget(
            hypotheses, done, last, running, running_rows, beam_scores, cut, generated, options, size
        )
        before = state.carry()  # both branches start from here (tf.cond traces them one after the other)
        chosen = tf.reshape(current, (-1,))
        out["logits"], out["carried"] = tf.cond(
            tf.reduce_all(done),
            lambda: (loop["logits"], before),
            lambda: _advance(state, before, parents, offsets, chosen, generated),
        )
        out.update(generated=generated + 1, running=running, running_rows=running_rows, beam_scores=beam_scores)
        out.update(group_done=done, hypotheses=dict(hypotheses.held))
        return (out,)

    loop = {
        "generated": tf.constant(0),
        "logits": logits,
        "running": running,
        "running_rows": tf.fill((batch, beams, steps), -1),
        "beam_scores": tf.tile(tf.constant([first_scores]), (batch, 1)),
        "group_done": tf.zeros((batch, groups), tf.bool),
        "hypotheses": dict(hypotheses.held),
        "carried": state.carry(),
        **step_buffers(options, steps, batch * beams, vocab),
    }
    (out,) = tf.while_loop(
        lambda loop: (loop["generated"] < steps) & ~tf.reduce_all(loop["group_done"]),
        body,
        (loop,),
        maximum_iterations=steps,
    )
    hypotheses.held = out["hypotheses"]
    sequences, rows, scores, lengths = hypotheses.best(options.num_return_sequences)
    found = {"finished": sequences, "finished_rows": rows, "finished_scores": scores, "finished_lengths": lengths}
    return found | {key: out[key] for key in ("generated", "scores", "raw_logits") if key in out}


def _finish_at_budget(hypotheses, done, last, running, running_rows, beam_scores, cut, generated, options, size):
    """Images out of budget: their unfinished groups' beams become hypotheses (`finalize`), scored at length `cut`.

    Forced difference: returns the new `done` (tensors are immutable).
    """
    lp = options.length_penalty
    for group in range(done.shape[1]):
        low, high = group * size, (group + 1) * size
        accepted = tf.broadcast_to((last & ~done[:, group])[:, None], tf.shape(beam_scores[:, low:high]))
        lengths = tf.fill(tf.shape(beam_scores[:, low:high]), generated + 1)
        scores = _per_length(beam_scores[:, low:high], cut, lp)
        hypotheses.add(group, running[:, low:high], running_rows[:, low:high], scores, lengths, accepted)
    return done | last[:, None]
