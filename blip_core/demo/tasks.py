"""The demo models' held-out tasks and their scores, shared by the training script, the quality
test and `blip demo` (framework-neutral: NumPy and PIL only).

Each held-out image gets its caption, one question (the four kinds in turn) and, for matching,
its true caption and a caption with one attribute changed: the hard negative that shows the
matcher reads count, colour, shape and background rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image

from blip_core.demo.synthetic import HELD_OUT_SEED, Scene, samples

DEMO_MODELS_DIR = Path(__file__).resolve().parents[1] / "data" / "models"
CAPTIONER, ANSWERER, MATCHER = "BlipForConditionalGeneration", "BlipForQuestionAnswering", "BlipForImageTextRetrieval"


@dataclass
class HeldOut:
    """Images with their expected caption, a question and answer, and a true and a false caption."""

    images: list[PIL.Image.Image]
    scenes: list[Scene]
    questions: list[str]
    answers: list[str]
    negatives: list[str]  # one altered caption per image


def held_out(count: int, start: int = 0) -> HeldOut:
    """Held-out samples start .. start + count - 1 (never seen in training)."""
    pairs = samples(HELD_OUT_SEED, start, count)
    scenes = [scene for _, scene in pairs]
    asked = [scene.questions()[(start + i) % 4] for i, scene in enumerate(scenes)]
    rng = np.random.default_rng([HELD_OUT_SEED, start, count])
    return HeldOut(
        images=[image for image, _ in pairs],
        scenes=scenes,
        questions=[question for question, _ in asked],
        answers=[answer for _, answer in asked],
        negatives=[scene.altered(rng).caption for scene in scenes],
    )


def exact_match(predictions: list[str], references: list[str]) -> float:
    """The fraction of predictions equal to their reference (after stripping spaces)."""
    if len(predictions) != len(references) or not references:
        raise ValueError(f"got {len(predictions)} predictions for {len(references)} references")
    return float(np.mean([p.strip() == r.strip() for p, r in zip(predictions, references, strict=True)]))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random positive outscores a random negative (ties count half)."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    positives, negatives = scores[labels], scores[~labels]
    if not len(positives) or not len(negatives):
        raise ValueError("roc_auc needs at least one positive and one negative")
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positives) * len(negatives)))
