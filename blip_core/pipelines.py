"""`pipeline(task, model=...)`: BLIP tasks in one call, in PyTorch or TensorFlow.

Tasks: "image-to-text" (captioning, optional prompt), "visual-question-answering",
"image-text-matching" (ITM probability and ITC cosine), "zero-shot-image-classification"
(a retrieval checkpoint's ITM head; BlipModel has no released text weights).
Frameworks are imported when a pipeline is built, never by `import blip_core`.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.image_loading import flatten_images
from blip_core.processing import BlipProcessor

# transformers' image-to-text and VQA pipelines generate up to 256 new tokens unless told otherwise.
PIPELINE_MAX_NEW_TOKENS = 256
DEFAULT_MODELS = {
    "image-to-text": "Salesforce/blip-image-captioning-base",
    "visual-question-answering": "Salesforce/blip-vqa-base",
    "image-text-matching": "Salesforce/blip-itm-base-coco",
    "zero-shot-image-classification": "Salesforce/blip-itm-base-coco",
}
TASK_CLASSES = {
    "image-to-text": "BlipForConditionalGeneration",
    "visual-question-answering": "BlipForQuestionAnswering",
    "image-text-matching": "BlipForImageTextRetrieval",
    "zero-shot-image-classification": "BlipForImageTextRetrieval",
}
FRAMEWORKS = {"pt": "blip_torch", "tf": "blip_tf"}


def default_framework() -> str:
    """PyTorch when installed, else TensorFlow."""
    for name, module in (("pt", "torch"), ("tf", "tensorflow")):
        if importlib.util.find_spec(module) is not None:
            return name
    raise RuntimeError("neither torch nor tensorflow is installed: pip install 'blip-dual[torch]' or 'blip-dual[tf]'")


@dataclass
class Runtime:
    """The framework-specific half of a pipeline: its tensors, its device, its model class."""

    framework: str
    device: Any = None
    torch_dtype: Any = None

    def load(self, class_name: str, source: Any, hub_options: dict[str, Any]) -> Any:
        if not isinstance(source, (str, os.PathLike)):
            return source  # an already loaded model
        module = importlib.import_module(FRAMEWORKS[self.framework])
        if self.framework == "pt":
            return getattr(module, class_name).from_pretrained(
                source, torch_dtype=self.torch_dtype, device=self.device, **hub_options
            )
        return getattr(module, "TF" + class_name).from_pretrained(source, **hub_options)

    def tensors(self, batch: dict[str, np.ndarray], model: Any) -> dict[str, Any]:
        if self.framework == "tf":
            return batch
        import torch

        out = {key: torch.from_numpy(value) for key, value in batch.items()}
        dtype = next(model.parameters()).dtype
        return {
            key: value.to(model.device, dtype) if value.is_floating_point() else value.to(model.device)
            for key, value in out.items()
        }

    def run(self, function: Any, **kwargs: Any) -> Any:
        if self.framework == "tf":
            import tensorflow as tf

            with tf.device(self.device) if self.device else _nothing():
                return function(**kwargs)
        import torch

        with torch.no_grad():
            return function(**kwargs)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().float().cpu().numpy() if value.is_floating_point() else value.detach().cpu().numpy()
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def _batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start : start + size] for start in range(0, len(items), max(size, 1))]


class Pipeline:
    """A loaded model and processor for one task; call it on images (and texts)."""

    def __init__(self, task: str, model: Any, processor: BlipProcessor, runtime: Runtime, batch_size: int = 1) -> None:
        self.task, self.model, self.processor, self.runtime = task, model, processor, runtime
        self.batch_size = batch_size

    @property
    def framework(self) -> str:
        return self.runtime.framework

    def __call__(self, images: Any, *args: Any, **kwargs: Any) -> Any:
        single = not isinstance(images, (list, tuple))
        images = flatten_images(images)
        batch_size = kwargs.pop("batch_size", self.batch_size)
        results = getattr(self, "_" + self.task.replace("-", "_"))(images, *args, batch_size=batch_size, **kwargs)
        return results[0] if single else results

    # -- tasks ------------------------------------------------------------------------

    def _generate(self, images: list, text: Any, batch_size: int, generate_kwargs: dict) -> list:
        texts = text if isinstance(text, (list, tuple)) else [text] * len(images)
        if len(texts) != len(images):
            raise ValueError(
                f"got {len(images)} images and {len(texts)} texts; give one text per image, or one for all"
            )
        options = {"max_new_tokens": PIPELINE_MAX_NEW_TOKENS, **generate_kwargs}
        length_chosen_here = "max_new_tokens" not in generate_kwargs and "max_length" not in generate_kwargs
        answers: list[str] = []
        for chunk in _batches(list(zip(images, texts, strict=True)), batch_size):
            chunk_images = [image for image, _ in chunk]
            chunk_texts = [t for _, t in chunk]
            if chunk_texts[0] is None:
                batch = self.processor(images=chunk_images, return_tensors="np")
            else:
                batch = self.processor(images=chunk_images, text=chunk_texts, padding=True, return_tensors="np")
            inputs = self.runtime.tensors(dict(batch), self.model)
            with warnings.catch_warnings():
                if length_chosen_here:  # the pipeline's 256 meeting a short position table is no news to the user
                    warnings.filterwarnings("ignore", message="generation capped at")
                ids = self.runtime.run(self.model.generate, **inputs, **options)
            decoded = self.processor.batch_decode(_numpy(ids), skip_special_tokens=True)
            per_image = options.get("num_return_sequences", 1)
            answers += [
                decoded[i : i + per_image] if per_image > 1 else decoded[i] for i in range(0, len(decoded), per_image)
            ]
        return answers

    def _image_to_text(self, images: list, prompt: Any = None, batch_size: int = 1, **generate_kwargs: Any) -> list:
        captions = self._generate(images, prompt, batch_size, generate_kwargs)
        return [
            [{"generated_text": text} for text in (caption if isinstance(caption, list) else [caption])]
            for caption in captions
        ]

    def _visual_question_answering(
        self, images: list, question: Any = None, batch_size: int = 1, **generate_kwargs: Any
    ) -> list:
        if question is None:
            raise ValueError("visual-question-answering needs a question: pipe(image, question='...')")
        answers = self._generate(images, question, batch_size, generate_kwargs)
        return [[{"answer": text} for text in (answer if isinstance(answer, list) else [answer])] for answer in answers]

    def _scores(self, image: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(P(match) from the ITM head, ITC cosine) of one image against each text."""
        batch = self.processor(images=[image], text=texts, padding=True, return_tensors="np")
        inputs = self.runtime.tensors(dict(batch), self.model)
        itm = _numpy(self.runtime.run(self.model, **inputs, use_itm_head=True).itm_score)
        itc = _numpy(self.runtime.run(self.model, **inputs, use_itm_head=False).itm_score)[0]
        shifted = itm - itm.max(axis=-1, keepdims=True)
        probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
        return probabilities[:, 1], itc

    def _image_text_matching(self, images: list, text: Any = None, batch_size: int = 1) -> list:
        if text is None:
            raise ValueError("image-text-matching needs text: pipe(image, text=['a cat', 'a dog'])")
        texts = [text] if isinstance(text, str) else list(text)
        results = []
        for image in images:
            match, cosine = self._scores(image, texts)
            results.append(
                [
                    {"text": t, "itm_score": float(m), "itc_score": float(c)}
                    for t, m, c in zip(texts, match, cosine, strict=True)
                ]
            )
        return results

    def _zero_shot_image_classification(
        self,
        images: list,
        candidate_labels: Any = None,
        batch_size: int = 1,
        hypothesis_template: str = "a photo of {}.",
    ) -> list:
        if not candidate_labels:
            raise ValueError("zero-shot-image-classification needs candidate_labels=[...]")
        labels = [candidate_labels] if isinstance(candidate_labels, str) else list(candidate_labels)
        results = []
        for image in images:
            match, _ = self._scores(image, [hypothesis_template.format(label) for label in labels])
            log_odds = np.log(np.clip(match, 1e-12, 1)) - np.log(np.clip(1 - match, 1e-12, 1))
            scores = np.exp(log_odds - log_odds.max())
            scores /= scores.sum()
            order = np.argsort(-scores, kind="stable")
            results.append([{"score": float(scores[i]), "label": labels[i]} for i in order])
        return results


def pipeline(
    task: str,
    model: Any = None,
    framework: str | None = None,
    device: Any = None,
    torch_dtype: Any = None,
    processor: BlipProcessor | None = None,
    batch_size: int = 1,
    **hub_options: Any,
) -> Pipeline:
    """Build a pipeline for `task` from a folder, a Hub id or a loaded model.

    >>> captioner = pipeline("image-to-text", model="Salesforce/blip-image-captioning-base")  # doctest: +SKIP
    >>> captioner("photo.jpg")  # doctest: +SKIP
    [{'generated_text': 'a cat sitting on a couch'}]
    """
    if task not in TASK_CLASSES:
        raise ValueError(f"unknown task {task!r}; BLIP pipelines: {sorted(TASK_CLASSES)}")
    framework = framework or default_framework()
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be 'pt' or 'tf', got {framework!r}")
    source = model if model is not None else default_model(task)
    runtime = Runtime(framework, device, torch_dtype)
    if processor is None:
        if not isinstance(source, (str, os.PathLike)):
            raise ValueError("pass processor=... with an already loaded model")
        processor = BlipProcessor.from_pretrained(source, **hub_options)
    return Pipeline(task, runtime.load(TASK_CLASSES[task], source, hub_options), processor, runtime, batch_size)


def default_model(task: str) -> str:
    """The embedded demo models for their tasks when present (said aloud: they know only synthetic
    shapes), else the Salesforce Hub repos."""
    embedded = Path(__file__).resolve().parent / "data" / "models" / TASK_CLASSES[task]
    if not (embedded / "config.json").exists():
        return DEFAULT_MODELS[task]
    warnings.warn(
        f"no model given: using the embedded demo model {embedded.name}, trained on synthetic shapes only; "
        f"for real photos pass {DEFAULT_MODELS[task]} (model=... in Python, --model on the command line)",
        stacklevel=3,
    )
    return str(embedded)
