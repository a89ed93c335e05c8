"""Beam search and group (diverse) beam search in NumPy, over the state of `host/decoding.py`.

The NumPy twin of `blip_torch/beam_search.py`: `transformers` 4.57's
vectorised beam search (optionally sampling the candidates) and 4.56's
diverse beam search, vectorised over the batch; each image keeps its own
budget. `beam_indices` hold, per new token, the row (image * num_beams + beam)
whose scores chose it. Ties in a top-k go to the lower index.
"""

from __future__ import annotations

import time

import numpy as np

from blip_core.generation.host.decoding import Decoding, is_end
from blip_core.generation.host.greedy import out_of_time, random_generator
from blip_core.generation.host.logits_processors import Step, log_softmax, process
from blip_core.generation.options import GenerationOptions, SpecialTokens
from blip_core.modeling.outputs import GenerateBeamDecoderOnlyOutput

NEVER = np.float32(-1.0e9)  # transformers' "never choose this beam" score


def topk(values: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The `count` largest of each row of `values` (N, M), best first, ties to the lower index: (values, int64
    indices), each (N, count). Selects with `argpartition` and sorts only the selected entries when the row
    is long and no tie straddles the cut; a full stable sort otherwise."""
    width = values.shape[-1]
    if width > 8 * count:
        part = np.argpartition(-values, count - 1, axis=-1)[:, :count]
        chosen = np.take_along_axis(values, part, -1)
        if ((values >= chosen.min(-1, keepdims=True)).sum(-1) == count).all():
            order = np.lexsort((part, -chosen), axis=-1)
            index = np.take_along_axis(part, order, -1)
            return np.take_along_axis(values, index, -1), index.astype(np.int64)
    index = np.argsort(-values, axis=-1, kind="stable")[:, :count].astype(np.int64)
    return np.take_along_axis(values, index, -1), index


def _gather(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """values (B, K, ...) gathered along beams by index (B, J) -> (B, J, ...)."""
    return np.take_along_axis(values, index.reshape(index.shape + (1,) * (values.ndim - 2)), 1)


def _history(running: np.ndarray, options: GenerationOptions) -> np.ndarray | None:
    return running.reshape(-1, running.shape[-1]) if options.needs_history else None


def _candidates(totals: np.ndarray, count: int, options: GenerationOptions, generator: np.random.Generator):
    """The `count` best (or, sampling, drawn without replacement) continuations of (B, beams * V) totals:
    (scores, indices). Drawing uses the Gumbel top-k trick on the softmax of the totals."""
    if options.do_sample:
        with np.errstate(divide="ignore", invalid="ignore"):
            keys = log_softmax(totals.astype(np.float64)) - np.log(-np.log(1.0 - generator.random(totals.shape)))
        index = topk(keys, count)[1]
        return np.take_along_axis(totals, index, 1), index
    return topk(totals, count)


def _output(held, count, width, all_scores, all_logits, options) -> GenerateBeamDecoderOnlyOutput:
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


def _per_length(scores: np.ndarray, length, lp: float) -> np.ndarray:
    """scores / length ** lp, for a length that is an int or an int array broadcasting to `scores`."""
    if isinstance(length, np.ndarray):
        return scores / length.astype(np.float32) ** lp
    return scores / float(length) ** lp


def _merge(held: dict, new: dict, done: np.ndarray, blocked: np.ndarray, beams: int) -> dict:
    """The `beams` best of the finished hypotheses `held` and the candidates `new` that are `done` and not
    `blocked` (both (B, C) bool); `new` holds the same keys but `is_finished`."""
    new = {**new, "is_finished": done}
    new["finished_scores"] = new["finished_scores"] + (blocked | ~done).astype(np.float32) * NEVER
    merged = topk(np.concatenate([held["finished_scores"], new["finished_scores"]], 1), beams)[1]
    return {name: _gather(np.concatenate([values, new[name]], 1), merged) for name, values in held.items()}


def _improvable(held: dict, best: np.ndarray, horizon, lp: float) -> np.ndarray:
    """(B, 1): whether `best` (B, 1) at length `horizon` beats the worst finished hypothesis (or one is missing)."""
    scores = held["finished_scores"]
    worst = np.where(held["is_finished"], scores.min(1, keepdims=True), np.full_like(scores, NEVER))
    return (_per_length(best, horizon, lp) > worst).any(-1, keepdims=True)


def _finish(held, new, top, ends, hits, best_running, improvable, width, generated, budget, options) -> tuple:
    """Add this step's finished candidates `new` (scored `top`) to `held`; return it and the new `improvable`
    (the rules of `blip_torch.beam_search._finish`: 4.57's new_tokens, or 4.15's whole_sequence)."""
    beams, lp = options.num_beams, options.length_penalty
    ended, cut, horizon = options.beam_lengths(width, generated, budget[:, None])
    top_beams = np.arange(top.shape[1]) < beams
    if not options.whole_sequence:
        full = held["is_finished"].all(-1, keepdims=True) & (options.early_stopping is True)
        scored = {**new, "finished_scores": _per_length(top, ended, lp)}
        held = _merge(held, scored, hits & top_beams, full | ~improvable, beams)
        return held, improvable & _improvable(held, best_running, horizon, lp)
    held = _merge(held, {**new, "finished_scores": _per_length(top, ended, lp)}, ends & top_beams, ~improvable, beams)
    full = held["is_finished"].all(-1, keepdims=True) & (options.early_stopping is True)
    improvable = improvable & _improvable(held, top[:, :1], horizon, lp) & ~full
    cut_off = hits & ~ends & (np.cumsum(~ends, 1) <= beams)
    held = _merge(held, {**new, "finished_scores": _per_length(top, cut, lp)}, cut_off, ~improvable, beams)
    return held, improvable


def _start_beams(state: Decoding, prompt: np.ndarray, logits: np.ndarray, beams: int, fill: int) -> tuple:
    """Expand to `beams` rows per image: (logits (B*K, V), budget (B,), steps, running (B, K, P+steps),
    running_rows (B, K, steps) int32 -1)."""
    batch, width = prompt.shape
    state.expand(beams)
    budget = state.max_new.reshape(batch, beams)[:, 0]
    steps = int(budget.max())
    running = np.full((batch, beams, width + steps), fill, dtype=np.int64)
    running[:, :, :width] = prompt[:, None]
    running_rows = np.full((batch, beams, steps), -1, dtype=np.int32)
    return np.repeat(logits, beams, 0), budget, steps, running, running_rows


def _no_hypotheses(running: np.ndarray, running_rows: np.ndarray) -> dict[str, np.ndarray]:
    """The finished hypotheses before any: (B, K) slots scored `NEVER`, holding copies of the running rows."""
    batch, beams = running.shape[:2]
    return {
        "finished": running.copy(),
        "finished_scores": np.full((batch, beams), NEVER, np.float32),
        "finished_lengths": np.zeros((batch, beams), np.int64),
        "finished_rows": running_rows.copy(),
        "is_finished": np.zeros((batch, beams), bool),
    }


def beam_search(
    state: Decoding, prompt: np.ndarray, logits: np.ndarray, options: GenerationOptions, tokens: SpecialTokens
) -> GenerateBeamDecoderOnlyOutput:
    """`transformers`' vectorised beam search (optionally sampling the candidates); hypotheses scored by
    `options.beam_length_rule`."""
    began = time.monotonic()
    batch, beams, width = prompt.shape[0], options.num_beams, prompt.shape[1]
    logits, budget, steps, running, running_rows = _start_beams(state, prompt, logits, beams, tokens.fill)
    vocab, keep = logits.shape[-1], tokens.keep * beams
    running_scores = np.zeros((batch, beams), np.float32)
    running_scores[:, 1:] = NEVER
    held = _no_hypotheses(running, running_rows)
    improvable = np.ones((batch, 1), bool)
    offsets = np.arange(batch)[:, None] * beams
    generator, all_scores, all_logits = random_generator(options), [], []
    for generated in range(steps):
        cursor = width + generated
        step = Step(state, generated, options, tokens, _history(running, options), cursor)
        scores = process(log_softmax(logits), step)
        if options.output_scores:
            all_scores.append(scores)
        if options.output_logits:
            all_logits.append(logits)
        totals = (scores.reshape(batch, beams, vocab) + running_scores[:, :, None]).reshape(batch, beams * vocab)
        top, index = _candidates(totals, keep, options, generator)
        source, picked = index // vocab, index % vocab
        candidates = _gather(running, source)
        candidates[:, :, cursor] = picked
        candidate_rows = _gather(running_rows, source)
        candidate_rows[:, :, generated] = (source + offsets).astype(np.int32)
        ends = is_end(picked, tokens)
        hits = ends | (generated + 1 >= budget[:, None]) | out_of_time(options, began)
        going = top + hits.astype(np.float32) * NEVER  # the best candidates that go on
        pick = topk(going, beams)[1]
        running, running_scores = _gather(candidates, pick), _gather(going, pick)
        parents, running_rows = _gather(source, pick), _gather(candidate_rows, pick)
        new = {"finished": candidates, "finished_lengths": np.full_like(picked, generated + 1)}
        new["finished_rows"] = candidate_rows
        held, improvable = _finish(
            held, new, top, ends, hits, running_scores[:, :1], improvable, width, generated, budget, options
        )
        open_beams = not (held["is_finished"].all() and options.early_stopping is True)
        if not (improvable.any() and open_beams and not hits.all()):
            break
        state.reorder((parents + offsets).reshape(-1))
        chosen = running[:, :, cursor].reshape(-1)
        state.mark(chosen)
        logits = state.step(chosen, generated + 1)
    return _output(held, options.num_return_sequences, width, all_scores, all_logits, options)
