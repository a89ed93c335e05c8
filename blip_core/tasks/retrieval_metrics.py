"""Retrieval recall@1/5/10 from score matrices, as salesforce/BLIP's `itm_eval` (`train_retrieval.py`) computes it.

Ground truth comes in the COCO/Flickr30k Karpathy annotation style: a list of `{"image": path, "caption": [...]}`
(or one caption string). Texts are numbered in file order, so image i owns a run of consecutive text indices.

- image-to-text: an image's rank is the best (smallest) rank of any of its captions in its row;
- text-to-image: a text's rank is the rank of its one image in its row;
- recall@K is the percentage of queries ranked within the first K (rank < K); the means are those of R@1/5/10,
  and `r_mean` the mean of both directions.

Ranks follow `np.argsort(row)[::-1]` exactly as the original, ties included: among equal scores, the one NumPy's
default sort puts last ranks first.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RECALL_AT = (1, 5, 10)
METRIC_NAMES = (
    "txt_r1",
    "txt_r5",
    "txt_r10",
    "txt_r_mean",
    "img_r1",
    "img_r5",
    "img_r10",
    "img_r_mean",
    "r_mean",
)


@dataclass
class GroundTruth:
    """The corpus of an annotation file: image paths, texts, and which text belongs to which image."""

    images: list[str]
    texts: list[str]
    text_to_image: list[int]  # text index -> its image index
    image_to_texts: list[list[int]]  # image index -> its text indices


def ground_truth(annotations: list[dict[str, Any]]) -> GroundTruth:
    """The corpus of Karpathy-style annotations: `[{"image": path, "caption": [str, ...] or str}, ...]`.

    Raises:
        ValueError: not a non-empty list of such records, or an image without a caption.
    """
    if not isinstance(annotations, list) or not annotations:
        raise ValueError("annotations must be a non-empty list of {'image': path, 'caption': [...]} records")
    images, texts, text_to_image, image_to_texts = [], [], [], []
    for index, record in enumerate(annotations):
        if not isinstance(record, dict) or not isinstance(record.get("image"), str):
            raise ValueError(f"annotation {index} must be a dict with an 'image' path, got {record!r:.200}")
        captions = record.get("caption")
        captions = [captions] if isinstance(captions, str) else captions
        if not isinstance(captions, list) or not captions or not all(isinstance(c, str) for c in captions):
            raise ValueError(f"annotation {index} ({record['image']}) needs 'caption': a string or list of strings")
        image_to_texts.append(list(range(len(texts), len(texts) + len(captions))))
        images.append(record["image"])
        texts.extend(captions)
        text_to_image.extend([len(images) - 1] * len(captions))
    return GroundTruth(images, texts, text_to_image, image_to_texts)


def read_annotations(path: str | os.PathLike) -> GroundTruth:
    """The corpus of a Karpathy-style JSON annotation file.

    Raises:
        OSError: the file cannot be read. ValueError: not JSON, or not the expected records.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"annotation file {os.fspath(path)!r} is not valid JSON: {error}") from None
    return ground_truth(data)


def _ranks(scores: np.ndarray) -> np.ndarray:
    """rank[i, j]: the position of column j in row i's `np.argsort(row)[::-1]` (0 = best)."""
    order = np.argsort(scores, axis=1)[:, ::-1]
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), axis=1)
    return ranks


def _recalls(ranks: np.ndarray) -> list[float]:
    return [100.0 * float(np.count_nonzero(ranks < k)) / len(ranks) for k in RECALL_AT]


def _checked(scores: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    array = np.asarray(scores)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.isnan(array).any():
        raise ValueError(f"{name} must hold numbers without NaN")
    return array


def retrieval_recalls(image_to_text: Any, text_to_image: Any, truth: GroundTruth) -> dict[str, float]:
    """`itm_eval`'s numbers: txt_r1/5/10 and txt_r_mean (image-to-text), img_r1/5/10 and img_r_mean
    (text-to-image), r_mean, as percentages, from (n_images, n_texts) and (n_texts, n_images) scores.

    Raises:
        ValueError: a matrix of the wrong shape, or holding NaN.
    """
    n_images, n_texts = len(truth.images), len(truth.texts)
    image_to_text = _checked(image_to_text, (n_images, n_texts), "image_to_text")
    text_to_image = _checked(text_to_image, (n_texts, n_images), "text_to_image")
    text_ranks = _ranks(image_to_text)
    best = np.array([text_ranks[i, own].min() for i, own in enumerate(truth.image_to_texts)])
    image_ranks = _ranks(text_to_image)[np.arange(n_texts), truth.text_to_image]
    txt, img = _recalls(best), _recalls(image_ranks)
    txt_mean, img_mean = sum(txt) / 3, sum(img) / 3
    values = (*txt, txt_mean, *img, img_mean, (txt_mean + img_mean) / 2)
    return dict(zip(METRIC_NAMES, values, strict=True))
