"""Held-out evaluation during fine-tuning, with each task's metric (framework-neutral: the model's public API is
the same in blip_torch and blip_tf).

- caption: greedy captions (after the run's prompt, if any) scored against every reference caption of their image:
  exact match of the COCO-tokenised text, plus BLEU-4 and CIDEr when `pycocoevalcap` is installed
  (`blip-dual[eval]`);
- vqa: greedy answers. Questions with VQA v2's ten annotators' answers: the official VQA accuracy
  (`blip_core.tasks.vqa_accuracy`, min(1, matches among the other nine / 3)); otherwise `answer_accuracy`: the
  weight of the predicted answer over the question's largest weight (1 for its best answer; exact match when it has
  one), answers compared after the official normalisation;
- retrieval: ITC cosine similarities of every distinct image with every caption; recall@1/5/10 both ways
  (`blip_core.tasks.retrieval_metrics`, as the original `itm_eval`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blip_core.processing.processor import BlipProcessor
from blip_core.tasks.caption_metrics import caption_scores, ptb_tokenize
from blip_core.tasks.retrieval_metrics import GroundTruth, retrieval_recalls
from blip_core.tasks.vqa_accuracy import normalize_answer, vqa_accuracy
from blip_core.training.paper import vqa_answer_weights
from blip_core.training.step_batches import TrainingExamples

MAX_NEW_TOKENS = 30
VQA_ANNOTATORS = 10  # answers per question in VQA v2: the official accuracy's leave-one-out needs them


class HeldOutEvaluator:
    """`evaluator(model, step) -> {metric: value}` on the held-out examples, `batch_size` images at a time."""

    def __init__(
        self,
        examples: TrainingExamples,
        processor: BlipProcessor,
        framework: str,
        prompt: str | None = None,
        batch_size: int = 16,
    ) -> None:
        self.examples, self.processor, self.framework = examples, processor, framework
        self.prompt, self.batch_size = prompt, batch_size

    def __call__(self, model: Any, step: int) -> dict[str, float]:
        if self.examples.task == "caption":
            return self.captions(model)
        if self.examples.task == "vqa":
            return self.answers(model)
        return self.recalls(model)

    def _inputs(self, model: Any, **inputs: Any) -> dict[str, Any]:
        features = self.processor(**inputs, padding=True, return_tensors=self.framework)
        if self.framework == "pt":
            return {key: value.to(model.device) for key, value in features.items()}
        return dict(features)

    def _generate(self, model: Any, images: list, texts: list[str] | None) -> list[str]:
        inputs = self._inputs(model, images=images, text=texts) if texts else self._inputs(model, images=images)
        ids = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS)
        return self.processor.batch_decode(_numpy(ids), skip_special_tokens=True)

    def _distinct_images(self) -> tuple[list[str], dict[str, Any], dict[str, list[str]]]:
        keys, first, texts = [], {}, {}
        for image, key, text in zip(self.examples.images, self.examples.image_keys, self.examples.texts, strict=True):
            if key not in first:
                keys.append(key)
                first[key] = image
            texts.setdefault(key, []).append(text)
        return keys, first, texts

    def captions(self, model: Any) -> dict[str, float]:
        keys, images, references = self._distinct_images()
        predictions = {}
        for start in range(0, len(keys), self.batch_size):
            chunk = keys[start : start + self.batch_size]
            prompts = [self.prompt] * len(chunk) if self.prompt else None
            for key, text in zip(chunk, self._generate(model, [images[k] for k in chunk], prompts), strict=True):
                predictions[key] = _without_prompt(text, self.prompt)
        try:
            return caption_scores(predictions, references)
        except ImportError:  # no pycocoevalcap: exact match alone
            hits = [ptb_tokenize(predictions[k]) in {ptb_tokenize(r) for r in references[k]} for k in keys]
            return {"exact_match": float(np.mean(hits))}

    def answers(self, model: Any) -> dict[str, float]:
        examples, predictions = self.examples, []
        for start in range(0, len(examples), self.batch_size):
            stop = start + self.batch_size
            predictions += self._generate(model, examples.images[start:stop], examples.texts[start:stop])
        if examples.weights is None and all(len(answers) == VQA_ANNOTATORS for answers in examples.answers):
            # VQA v2's ten annotators' answers, as people wrote them ("two"), not VQA-normalised ("2")
            return {"vqa_accuracy": vqa_accuracy(predictions, examples.answers, normalize_references=True)}
        return {"answer_accuracy": answer_accuracy(predictions, examples.answers, examples.weights)}

    def recalls(self, model: Any) -> dict[str, float]:
        keys, images, _ = self._distinct_images()
        size, texts = self.batch_size, self.examples.texts
        image_features = [
            _numpy(model.get_image_features(**self._inputs(model, images=[images[k] for k in keys[s : s + size]])))
            for s in range(0, len(keys), size)
        ]
        text_features = [
            _numpy(model.get_text_features(**self._inputs(model, text=texts[s : s + size])))
            for s in range(0, len(texts), size)
        ]
        image_matrix, text_matrix = np.concatenate(image_features), np.concatenate(text_features)
        similarity = image_matrix @ text_matrix.T  # (images, texts)
        position = {key: index for index, key in enumerate(keys)}
        text_to_image = [position[key] for key in self.examples.image_keys]
        image_to_texts = [[t for t, i in enumerate(text_to_image) if i == index] for index in range(len(keys))]
        truth = GroundTruth([str(k) for k in keys], list(texts), text_to_image, image_to_texts)
        return retrieval_recalls(similarity, similarity.T, truth)


def _numpy(value: Any) -> np.ndarray:
    """A torch tensor (on any device) or a TF tensor as a NumPy array."""
    if hasattr(value, "detach"):
        value = value.detach().float().cpu() if value.is_floating_point() else value.detach().cpu()
    return np.asarray(value)


def _without_prompt(text: str, prompt: str | None) -> str:
    """A generated caption without the prompt it was asked to continue."""
    if prompt and text.lower().startswith(prompt.lower()):
        return text[len(prompt) :].strip()
    return text


def answer_accuracy(
    predictions: list[str], answers: list[list[str]], weights: list[list[float]] | None = None
) -> float:
    """The mean over questions of the predicted answer's weight over the question's largest weight (0 when it is
    none of its answers); weights given, or the annotators' shares (`vqa_answer_weights`). Answers are compared
    after VQA's normalisation ("Two." == "2")."""
    scores = []
    for number, (prediction, given) in enumerate(zip(predictions, answers, strict=True)):
        distinct, shares = vqa_answer_weights(given) if weights is None else (given, weights[number])
        by_answer: dict[str, float] = {}
        for answer, share in zip(distinct, shares, strict=True):
            key = normalize_answer(answer)
            by_answer[key] = by_answer.get(key, 0.0) + float(share)
        best = max(by_answer.values())
        scores.append(by_answer.get(normalize_answer(prediction), 0.0) / best if best > 0 else 0.0)
    return float(np.mean(scores))
