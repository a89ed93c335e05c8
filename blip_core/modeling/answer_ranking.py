"""What both trees' `rank_answers` (VQA answer ranking as the original BLIP's `rank_answer`) check and choose
without tensors: the argument checks and the number of candidates kept."""

from __future__ import annotations

import numbers

DEFAULT_RANK_K = 128  # the original's k_test for VQA


def check_ranking_inputs(
    candidate_shape: tuple[int, ...],
    candidate_mask_shape: tuple[int, ...] | None,
    question_shape: tuple[int, ...],
    question_mask_shape: tuple[int, ...] | None,
    k: object,
) -> int:
    """k' = min(k, number of candidates), after checking every shape.

    Raises:
        TypeError: `k` is not an integer.
        ValueError: `k` < 1; `candidate_ids` not 2-D, without candidates or shorter than 2 tokens ([DEC] and an
            answer token); a mask whose shape differs from its ids'; `input_ids` not 2-D.
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"rank_answers: k must be an integer, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"rank_answers: k must be at least 1, got {k}")
    if len(question_shape) != 2:
        raise ValueError(f"rank_answers: input_ids must be 2-D (questions, length), got shape {tuple(question_shape)}")
    if question_mask_shape is not None and tuple(question_mask_shape) != tuple(question_shape):
        raise ValueError(
            f"rank_answers: attention_mask has shape {tuple(question_mask_shape)}, input_ids {tuple(question_shape)}"
        )
    if len(candidate_shape) != 2:
        raise ValueError(
            "rank_answers: candidate_ids must be 2-D (candidates, length), as BlipProcessor.tokenize_answers "
            f"returns, got shape {tuple(candidate_shape)}"
        )
    if candidate_shape[0] < 1:
        raise ValueError("rank_answers: candidate_ids holds no candidate answers")
    if candidate_shape[1] < 2:
        raise ValueError(
            f"rank_answers: candidate_ids rows need at least 2 tokens ([DEC], then the answer), "
            f"got {candidate_shape[1]}"
        )
    if candidate_mask_shape is not None and tuple(candidate_mask_shape) != tuple(candidate_shape):
        raise ValueError(
            f"rank_answers: candidate_attention_mask has shape {tuple(candidate_mask_shape)}, "
            f"candidate_ids {tuple(candidate_shape)}"
        )
    return int(min(k, candidate_shape[0]))


def check_candidate_ids(low: int, high: int, vocab_size: int) -> None:
    """Raises ValueError when a candidate token id (smallest `low`, largest `high`) is outside the vocabulary."""
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"rank_answers: candidate_ids holds token id {low if low < 0 else high}, outside the decoder's "
            f"vocabulary of {vocab_size}"
        )
