"""The entry point of the NumPy generation loop, `generate`, and `transition_scores`.

The NumPy twin of `blip_torch.generation.generate`: the same options, rules
and outputs (`blip_core.modeling.outputs`, holding NumPy arrays), with the model
behind a `DecoderRunner` (`decoding.py`).
"""

from __future__ import annotations

import numpy as np

from blip_core.generation.host.beam_search import beam_search
from blip_core.generation.host.decoding import DecoderRunner, start
from blip_core.generation.host.greedy import greedy_or_sample
from blip_core.generation.host.group_beam_search import group_beam_search
from blip_core.generation.host.logits_processors import log_softmax
from blip_core.generation.options import GenerationOptions, SpecialTokens
from blip_core.generation.sampling import check_sampling_seeds
from blip_core.modeling.outputs import GenerateBeamDecoderOnlyOutput, GenerateDecoderOnlyOutput, empty_generate_output


def generate(
    runner: DecoderRunner,
    rows: list[list[int]],
    options: GenerationOptions,
    tokens: SpecialTokens,
    max_position_embeddings: int,
    pad_token_id: int,
) -> np.ndarray | GenerateDecoderOnlyOutput | GenerateBeamDecoderOnlyOutput:
    """Decode one prompt row per encoder row of `runner`; ids (rows * returned, length) int64 begin with the
    start token, prompts left-padded with `pad_token_id` (the text config's). With
    `options.return_dict_in_generate`, the output dataclass holding NumPy arrays.

    Raises ValueError when `options.sampling_seeds` does not hold one seed per row, or a prompt leaves no
    room for a new token.
    """
    check_sampling_seeds(options.sampling_seeds, len(rows))
    if not rows:
        return empty_output(options)
    state, prompt, logits = start(runner, rows, options, max_position_embeddings, pad_token_id)
    loop = group_beam_search if options.is_group_beam else beam_search if options.is_beam else greedy_or_sample
    output = loop(state, prompt, logits, options, tokens)
    return output if options.return_dict_in_generate else output.sequences


def empty_output(options: GenerationOptions) -> np.ndarray | GenerateDecoderOnlyOutput:
    """A batch of no images: (0, 1) int64 ids (and empty scores) without running the model."""
    sequences = np.zeros((0, 1), dtype=np.int64)
    if not options.return_dict_in_generate:
        return sequences
    return empty_generate_output(options, sequences, np.zeros((0,), np.float32))


def transition_scores(
    sequences: np.ndarray,
    scores: tuple[np.ndarray, ...],
    beam_indices: np.ndarray | None,
    normalize_logits: bool,
    vocab_size: int,
) -> np.ndarray:
    """`compute_transition_scores`: the score each generated token had when chosen, (rows, new tokens) in the
    scores' dtype. Beam rows follow `beam_indices` (-1 past a hypothesis' end, where the score is 0)."""
    sequences = np.asarray(sequences)
    if beam_indices is None:
        beam_indices = np.broadcast_to(np.arange(scores[0].shape[0])[:, None], (scores[0].shape[0], len(scores)))
    beam_indices = np.asarray(beam_indices).astype(np.int64)
    stacked = np.stack(scores).reshape(len(scores), -1).T  # (N*V, steps)
    if normalize_logits:  # in float64, then the scores' dtype
        by_token = stacked.astype(np.float64).reshape(-1, vocab_size, stacked.shape[-1])
        normalized = log_softmax(by_token.transpose(0, 2, 1)).transpose(0, 2, 1)
        stacked = normalized.reshape(-1, stacked.shape[-1]).astype(stacked.dtype)
    unused = beam_indices < 0
    length = int((~unused).sum(-1).max())
    unused = unused[:, :length]
    rows = np.where(unused, 0, beam_indices[:, :length])
    indices = sequences[:, sequences.shape[-1] - length :] + rows * vocab_size
    gathered = stacked[indices, np.arange(length)[None]]
    return np.where(unused, np.zeros((), stacked.dtype), gathered)
