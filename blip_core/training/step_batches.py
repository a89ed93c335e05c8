"""The examples of a fine-tuning run and the NumPy batches every worker trains on (framework-neutral).

Every text is tokenised once, up front, to one fixed length (the longest text, at most `max_length`), so every
batch of a run has the same shapes (one traced graph in Keras) and each step's loss normaliser is known before any
image is read: `normalizer` (B,) float32, the same value in every row, is the count the whole global step divides
by (label tokens for captioning; questions or pairs for VQA and retrieval). Each worker's loss is the SUM of its
rows' losses divided by it, so the contributions of all micro-batches and workers add up to exactly the loss of one
process over the whole global batch.

Batch keys:
- caption: pixel_values (B, 3, H, W) float32, input_ids/attention_mask/labels (B, L) int64 (first id BOS
  `[DEC]`, labels -100 on padding and on a masked prompt), normalizer;
- vqa: pixel_values, input_ids/attention_mask (B, Lq) of the questions, decoder_input_ids/decoder_attention_mask/
  labels (B*K, La) of each question's K answer slots (BOS first; unused slots weigh 0), weights (B*K,) float32
  (an answer's share of the annotators' answers, the original BLIP VQA weighting), normalizer;
- retrieval: pixel_values, input_ids/attention_mask (B, L) starting `[CLS]`, image_ids (B,) int64 (pairs showing
  the same image are never each other's hard negatives), uniforms (B, 2) float64 (the draws of the pair's hard
  negative image and text, `sample_hard_negatives`' layout), normalizer.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blip_core.config.model_constants import IGNORE_INDEX
from blip_core.processing.processor import BlipProcessor
from blip_core.training.options import FinetuneOptions
from blip_core.training.paper import vqa_answer_weights
from blip_core.training.plan import StepPlan

MAX_ANSWERS = 10  # answer slots per question (VQA v2 has 10 annotators' answers)
ANSWER_LENGTH = 12  # answer tokens, BOS and [SEP] included


@dataclass
class TrainingExamples:
    """The examples of one task: `images[i]` (a path, encoded bytes, a PIL image or an array) with `texts[i]` (the
    caption, or the question for VQA); VQA adds `answers[i]` (the annotators' answers, or distinct answers with
    `weights[i]`); `image_keys[i]` names the image (retrieval: equal keys are one image)."""

    task: str
    images: list[Any]
    texts: list[str]
    answers: list[list[str]] | None = None
    weights: list[list[float]] | None = None
    image_keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.images) != len(self.texts):
            raise ValueError(f"got {len(self.images)} images and {len(self.texts)} texts")
        if self.task == "vqa" and (self.answers is None or len(self.answers) != len(self.texts)):
            raise ValueError("VQA examples need one list of answers per question")
        if not self.image_keys:
            self.image_keys = [str(index) for index in range(len(self.images))]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> TrainingExamples:
        """The examples at `indices`, in that order."""

        def pick(values: list | None) -> list | None:
            return None if values is None else [values[i] for i in indices]

        return TrainingExamples(
            self.task, pick(self.images), pick(self.texts), pick(self.answers), pick(self.weights),
            pick(self.image_keys),
        )  # fmt: skip


class StepBatches:
    """Builds worker batches of a run: `batch(step, indices)`; `plan` says which indices each step has."""

    def __init__(
        self, processor: BlipProcessor, examples: TrainingExamples, options: FinetuneOptions, plan: StepPlan
    ) -> None:
        self.processor, self.examples, self.options, self.plan = processor, examples, options, plan
        self.task = examples.task
        tokenizer = processor.tokenizer
        texts = examples.texts
        if self.task == "caption" and options.prompt:
            texts = [f"{options.prompt} {text}" for text in texts]
        self.text_length = _fixed_length(tokenizer, texts, options.max_length)
        tokens = tokenizer(
            texts, padding="max_length", truncation=True, max_length=self.text_length, return_tensors="np"
        )
        self.input_ids, self.attention_mask = tokens["input_ids"].astype(np.int64), tokens["attention_mask"]
        if self.task == "caption":
            self.input_ids[:, 0] = tokenizer.bos_token_id  # [CLS] -> [DEC], the token generate starts from
            self.labels = np.where(self.attention_mask == 1, self.input_ids, IGNORE_INDEX)
            if options.prompt:
                prompt_length = 1 + len(tokenizer(options.prompt, add_special_tokens=False)["input_ids"])
                self.labels[:, :prompt_length] = IGNORE_INDEX
            self.label_counts = (self.labels[:, 1:] != IGNORE_INDEX).sum(axis=1)
        elif self.task == "vqa":
            self._answer_slots(tokenizer)
        else:
            _, self.image_ids = np.unique(np.asarray(examples.image_keys), return_inverse=True)

    def _answer_slots(self, tokenizer: Any) -> None:
        """K answer slots per question: tokens (n, K, La) and weights (n, K), unused slots weighing 0."""
        pairs = []
        for number, answers in enumerate(self.examples.answers):
            given = None if self.examples.weights is None else self.examples.weights[number]
            distinct, weights = vqa_answer_weights(answers) if given is None else (list(answers), list(given))
            pairs.append((distinct, weights))
        self.answer_slots = max(len(distinct) for distinct, _ in pairs)
        if self.answer_slots > MAX_ANSWERS:
            raise ValueError(f"a question has {self.answer_slots} distinct answers; at most {MAX_ANSWERS} are kept")
        texts = [a for distinct, _ in pairs for a in distinct + [""] * (self.answer_slots - len(distinct))]
        tokens = tokenizer(texts, padding="max_length", truncation=True, max_length=ANSWER_LENGTH, return_tensors="np")
        ids = tokens["input_ids"].astype(np.int64)
        ids[:, 0] = tokenizer.bos_token_id
        shape = (len(pairs), self.answer_slots, ANSWER_LENGTH)
        self.answer_ids, self.answer_mask = ids.reshape(shape), tokens["attention_mask"].reshape(shape)
        self.answer_weights = np.zeros((len(pairs), self.answer_slots), np.float32)
        for number, (_, weights) in enumerate(pairs):
            self.answer_weights[number, : len(weights)] = weights

    def normalizer(self, step: int) -> float:
        """What step `step`'s summed loss is divided by: its label tokens (caption) or its examples."""
        if self.task == "caption":
            return float(max(1, self.label_counts[self.plan.step_indices(step)].sum()))
        return float(self.plan.batch_size)

    def uniforms(self, step: int) -> np.ndarray:
        """(batch_size, 2) float64: the hard-negative draws of step `step`'s pairs (retrieval)."""
        return np.random.default_rng([self.options.seed, step, 1]).random((self.plan.batch_size, 2))

    def pixel_values(self, indices: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 of the examples' images, through the processor."""
        images = [self.examples.images[i] for i in indices]
        return np.asarray(self.processor.image_processor(images, return_tensors="np")["pixel_values"], np.float32)

    def batch(self, step: int, rank: int, micro: int) -> dict[str, np.ndarray]:
        """Worker `rank`'s micro-batch `micro` of step `step` (see the module docstring for the keys)."""
        indices = self.plan.micro_batches(step, rank)[micro]
        rows = len(indices)
        batch = {
            "pixel_values": self.pixel_values(indices),
            "input_ids": self.input_ids[indices],
            "attention_mask": self.attention_mask[indices].astype(np.int64),
            "normalizer": np.full(rows, self.normalizer(step), np.float32),
        }
        if self.task == "caption":
            batch["labels"] = self.labels[indices]
        elif self.task == "vqa":
            flat = (rows * self.answer_slots, ANSWER_LENGTH)
            answer_ids = self.answer_ids[indices].reshape(flat)
            answer_mask = self.answer_mask[indices].reshape(flat).astype(np.int64)
            batch["decoder_input_ids"], batch["decoder_attention_mask"] = answer_ids, answer_mask
            batch["labels"] = np.where(answer_mask == 1, answer_ids, IGNORE_INDEX)
            batch["weights"] = self.answer_weights[indices].reshape(-1)
        else:
            position = self.plan.worker_slice(rank).start + micro * rows
            batch["image_ids"] = self.image_ids[indices].astype(np.int64)
            batch["uniforms"] = self.uniforms(step)[position : position + rows]
        return batch

    def step_image_ids(self, step: int) -> np.ndarray:
        """(batch_size,) int64: the image ids of the whole global step, in worker order (retrieval)."""
        return self.image_ids[self.plan.step_indices(step)].astype(np.int64)


def _fixed_length(tokenizer: Any, texts: list[str], max_length: int) -> int:
    """The longest tokenised text (special tokens included), at most `max_length`."""
    if not texts:
        raise ValueError("no training texts")
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    longer = sum(length > max_length for length in lengths)
    if longer:
        warnings.warn(
            f"{longer} of {len(texts)} training texts are longer than max_length={max_length} tokens and are cut "
            f"(the longest has {max(lengths)}); raise --max-length to keep them whole",
            stacklevel=3,
        )
    return min(max(lengths), max_length)
