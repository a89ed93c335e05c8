"""Batches and the framework-neutral steps of the original BLIP's fine-tuning objectives (NumPy).

- VQA with several weighted answers per question (salesforce/BLIP `BLIP_VQA.forward(train=True)`): each
  question comes with `n` answers and their weights (VQA v2: an answer's share of the 10 annotators' answers,
  as the original `vqa_dataset.py` builds them); the loss is `sum(weights * per_answer_loss) / batch_size`.
- Retrieval with ITC + ITM (`BLIP_Retrieval.forward`, without its momentum encoders and queues): a hard negative
  text per image and image per text, drawn with probability softmax(ITC similarity) with the positives (same
  image id) masked, from a seeded NumPy generator so both frameworks train on the same negatives.

The tensor halves are `blip_torch.training` and `blip_tf.training` (`weighted_vqa_loss`, `retrieval_losses`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from blip_core.config.model_constants import ENC_TOKEN_ID
from blip_core.processing.processor import BlipProcessor
from blip_core.processing.text_cleaning import clean_caption, clean_question

PROTOCOLS = ("transformers", "original")
ORIGINAL_TEXT_LENGTH = 35  # the original's question and retrieval-text max_length


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def vqa_answer_weights(annotator_answers: Sequence[str]) -> tuple[list[str], list[float]]:
    """The distinct answers, first-seen order, each weighted by its share of the annotators' answers.

    `["two", "two", "2"]` -> `(["two", "2"], [2/3, 1/3])`, the original `vqa_dataset.py` rule (VQA v2 has 10
    answers per question). Raises ValueError for no answers, TypeError for a non-string answer.
    """
    if isinstance(annotator_answers, str) or not len(annotator_answers):
        raise ValueError(f"annotator_answers must be a non-empty list of strings, got {annotator_answers!r}")
    counts: dict[str, int] = {}
    for answer in annotator_answers:
        if not isinstance(answer, str):
            raise TypeError(f"answers must be strings, got {type(answer).__name__}")
        counts[answer] = counts.get(answer, 0) + 1
    return list(counts), [count / len(annotator_answers) for count in counts.values()]


def _record_answers(number: int, record: Sequence[Any]) -> tuple[list[str], list[float]]:
    if len(record) not in (3, 4):
        raise ValueError(f"record {number}: expected (image, question, answers[, weights]), got {len(record)} items")
    answers = record[2]
    weights = record[3] if len(record) == 4 else None
    if weights is None:
        return vqa_answer_weights(answers)
    if isinstance(answers, str) or not len(answers) or len(answers) != len(weights):
        raise ValueError(f"record {number}: {len(answers)} answers and {len(weights)} weights (need equal, >= 1)")
    if not all(isinstance(a, str) for a in answers):
        raise TypeError(f"record {number}: answers must be strings")
    weights = [float(w) for w in weights]
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ValueError(f"record {number}: weights must be finite and >= 0, got {weights}")
    return list(answers), weights


def weighted_vqa_examples(
    processor: BlipProcessor,
    records: Sequence[Sequence[Any]],
    protocol: str = "transformers",
    max_question_length: int = ORIGINAL_TEXT_LENGTH,
    max_answer_length: int = 40,
) -> dict[str, np.ndarray]:
    """A batch of `(image, question, answers, weights)` records (weights left out or None: the answers are the
    annotators' and weighted by `vqa_answer_weights`).

    Returns pixel_values (B, 3, H, W); input_ids/attention_mask (B, Lq) of the questions (first token `[ENC]`
    under `protocol="original"`, where questions are first cleaned as the original's `pre_question`, else
    `[CLS]`); decoder_input_ids/decoder_attention_mask/labels (N, La) of the
    N answers, question by question (BOS first, `[SEP]` last, -100 on padding in labels); `n` (B,) int64, the
    answers per question; `weights` (N,) float32. Raises ValueError for an empty batch or a bad record.
    """
    _check_protocol(protocol)
    if not len(records):
        raise ValueError("weighted_vqa_examples needs at least one record")
    answers: list[str] = []
    weights: list[float] = []
    counts: list[int] = []
    for number, record in enumerate(records):
        record_answers, record_weights = _record_answers(number, record)
        answers += record_answers
        weights += record_weights
        counts.append(len(record_answers))
    questions = [record[1] for record in records]
    if protocol == "original":  # the original cleans questions before tokenizing (its `pre_question`)
        questions = [clean_question(question) for question in questions]
    batch = processor(
        images=[record[0] for record in records],
        text=questions,
        padding=True,
        truncation=True,
        max_length=max_question_length,
        return_tensors="np",
    )
    input_ids = batch["input_ids"].copy()
    if protocol == "original":
        input_ids[:, 0] = ENC_TOKEN_ID
    tokens = processor.tokenizer(
        answers, padding=True, truncation=True, max_length=max_answer_length, return_tensors="np"
    )
    decoder_ids = tokens["input_ids"].copy()
    decoder_ids[:, 0] = processor.tokenizer.bos_token_id
    return {
        "pixel_values": batch["pixel_values"],
        "input_ids": input_ids,
        "attention_mask": batch["attention_mask"],
        "decoder_input_ids": decoder_ids,
        "decoder_attention_mask": tokens["attention_mask"],
        "labels": np.where(tokens["attention_mask"] == 1, decoder_ids, -100),
        "n": np.asarray(counts, np.int64),
        "weights": np.asarray(weights, np.float32),
    }


def retrieval_examples(
    processor: BlipProcessor,
    images: Sequence[Any],
    captions: Sequence[str],
    image_ids: Sequence[int] | None = None,
    protocol: str = "transformers",
    max_length: int = ORIGINAL_TEXT_LENGTH,
) -> dict[str, np.ndarray]:
    """A retrieval batch of (image, caption) pairs; pairs with the same image id are never hard negatives of each other.

    Returns pixel_values (B, 3, H, W); input_ids/attention_mask (B, L) starting `[CLS]` (the ITC pass);
    itm_input_ids (B, L), the texts of the ITM pass (`[ENC]` first under `protocol="original"`, where captions are
    first cleaned as the original's `pre_caption`, else the same ids); image_ids (B,) int64 (default: every pair
    its own image). Raises ValueError on mismatched lengths.
    """
    _check_protocol(protocol)
    if len(images) != len(captions) or not len(images):
        raise ValueError(f"got {len(images)} images and {len(captions)} captions (need equal, >= 1)")
    ids = np.arange(len(images), dtype=np.int64) if image_ids is None else np.asarray(image_ids)
    if ids.shape != (len(images),) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"image_ids must be {len(images)} integers, got {image_ids!r}")
    texts = [clean_caption(caption) for caption in captions] if protocol == "original" else list(captions)
    batch = processor(
        images=list(images),
        text=texts,
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="np",
    )
    itm_ids = batch["input_ids"].copy()
    if protocol == "original":
        itm_ids[:, 0] = ENC_TOKEN_ID
    return {
        "pixel_values": batch["pixel_values"],
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "itm_input_ids": itm_ids,
        "image_ids": ids.astype(np.int64),
    }


def contrastive_targets(image_ids: np.ndarray, same_image_positives: bool = False) -> np.ndarray:
    """(B, B) float32 ITC targets. The original's: the identity (its `blip_retrieval.py` computes targets from
    the image ids, then overwrites them with the diagonal, so another caption of the same image counts as an ITC
    negative; the ids only keep it out of the hard negatives). With `same_image_positives`: 1/k on the k pairs
    sharing row i's image id (what LAVIS does)."""
    ids = np.asarray(image_ids)
    same = ids[:, None] == ids[None, :] if same_image_positives else np.eye(len(ids), dtype=bool)
    same = same.astype(np.float64)
    return (same / same.sum(axis=1, keepdims=True)).astype(np.float32)


def _draw(weights: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """One index per row, row i drawn with probability weights[i] / sum(weights[i]) by inverse CDF."""
    cumulative = np.cumsum(weights, axis=1)
    targets = uniforms * cumulative[:, -1]
    picked = (cumulative <= targets[:, None]).sum(axis=1)  # the first index whose cumulative weight passes u
    return np.minimum(picked, weights.shape[1] - 1).astype(np.int64)


def hard_negative_weights(similarity: np.ndarray, image_ids: np.ndarray) -> np.ndarray:
    """softmax(similarity) per row in float64 with the positives (same image id) set to 0. Raises ValueError
    when a row has no negative (every pair in the batch shows the same image)."""
    scores = np.asarray(similarity, np.float64)
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    ids = np.asarray(image_ids)
    weights[ids[:, None] == ids[None, :]] = 0.0
    empty = np.flatnonzero(weights.sum(axis=1) <= 0)
    if empty.size:
        raise ValueError(
            f"retrieval training needs a negative for every pair: pair {int(empty[0])} has none (image_ids must "
            "hold at least two different images, and similarities must be finite)"
        )
    return weights


def sample_hard_negatives(
    similarity: np.ndarray, image_ids: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The original's in-batch hard negatives from the ITC similarity (B, B) of images (rows) to texts.

    Returns (negative image for each text, negative text for each image), two (B,) int64 index arrays, drawn
    with probability softmax(similarity) over the pairs of other images. Draws `rng.random((2, B))` (images
    first), so the same seed gives the same negatives in both frameworks.
    """
    similarity = np.asarray(similarity, np.float64)
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1] or similarity.shape[0] != len(image_ids):
        raise ValueError(f"similarity must be ({len(image_ids)}, {len(image_ids)}), got {similarity.shape}")
    uniforms = rng.random((2, similarity.shape[0]))
    negative_images = _draw(hard_negative_weights(similarity.T, image_ids), uniforms[0])
    negative_texts = _draw(hard_negative_weights(similarity, image_ids), uniforms[1])
    return negative_images, negative_texts


VQA_KEYS = ("pixel_values", "input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask", "labels")
RETRIEVAL_KEYS = ("pixel_values", "input_ids", "attention_mask", "itm_input_ids", "image_ids")


def check_batch_keys(batch: Any, keys: Sequence[str], builder: str) -> None:
    """Raises ValueError naming the keys a paper-objective batch lacks (and the helper that builds them)."""
    missing = [key for key in keys if key not in batch]
    if missing:
        raise ValueError(f"the batch lacks {missing}: build it with blip_core.training.{builder}")


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A NumPy generator from a seed (None: seed 0), or the generator itself. Raises TypeError otherwise."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, int) and not isinstance(rng, bool)):
        return np.random.default_rng(0 if rng is None else rng)
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got {type(rng).__name__}")
