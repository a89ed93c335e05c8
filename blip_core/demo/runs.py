"""Run the three embedded demo models on held-out images in one framework, as NumPy.

`blip demo`, the quality test and the training script's final report all call this, once per
framework, and compare the results: generated ids, the logits behind them, ITM probabilities
and ITC cosines. Frameworks are imported here, lazily, never by `import blip_core`.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.demo.tasks import ANSWERER, CAPTIONER, DEMO_MODELS_DIR, MATCHER, HeldOut
from blip_core.processing.processor import BlipProcessor

FRAMEWORK_PACKAGES = {"pt": "blip_torch", "tf": "blip_tf"}


@dataclass
class DemoRun:
    """One framework's outputs on a held-out set (ids trimmed of trailing padding)."""

    captions: list[str]
    caption_ids: np.ndarray
    caption_logits: np.ndarray  # teacher-forced on the generated ids
    answers: list[str]
    answer_ids: np.ndarray
    answer_logits: np.ndarray
    match_probability: np.ndarray  # (N, 2): ITM P(match) of the true caption and of the altered one
    match_cosine: np.ndarray  # (N, 2): ITC cosine of the same pairs

    def outputs(self) -> dict[str, np.ndarray]:
        """The numeric outputs by name, for side-by-side comparison."""
        return {
            "caption ids": self.caption_ids,
            "caption logits": self.caption_logits,
            "answer ids": self.answer_ids,
            "answer logits": self.answer_logits,
            "ITM probability": self.match_probability,
            "ITC cosine": self.match_cosine,
        }


def demo_models_present(models_dir: Path = DEMO_MODELS_DIR) -> bool:
    """Whether the three trained demo models are there (they ship with the package)."""
    return all((models_dir / name / "model.safetensors").is_file() for name in (CAPTIONER, ANSWERER, MATCHER))


def run_demo_models(
    framework: str, held: HeldOut, models_dir: Path = DEMO_MODELS_DIR, max_new_tokens: int = 12
) -> DemoRun:
    """Caption, answer and match `held` with the demo models in "pt" or "tf"."""
    if framework not in FRAMEWORK_PACKAGES:
        raise ValueError(f"framework must be 'pt' or 'tf', got {framework!r}")
    if not demo_models_present(models_dir):
        raise FileNotFoundError(f"{models_dir} lacks the trained demo models: run scripts/train_demo.py")
    package = importlib.import_module(FRAMEWORK_PACKAGES[framework])
    prefix = "" if framework == "pt" else "TF"
    run = framework_calls(framework)
    with run.inference():
        return _run(package, prefix, run, held, models_dir, max_new_tokens)


def _run(package, prefix: str, run, held: HeldOut, models_dir: Path, max_new_tokens: int) -> DemoRun:
    processor = BlipProcessor.from_pretrained(models_dir / CAPTIONER)
    pixels = processor(images=held.images, return_tensors="np")["pixel_values"]

    captioner = getattr(package, prefix + CAPTIONER).from_pretrained(models_dir / CAPTIONER)
    caption_ids = _trim(run.numpy(captioner.generate(run.tensor(pixels), max_new_tokens=max_new_tokens)))
    caption_logits = run.numpy(captioner(pixel_values=run.tensor(pixels), input_ids=run.tensor(caption_ids)).logits)

    answerer = getattr(package, prefix + ANSWERER).from_pretrained(models_dir / ANSWERER)
    question = processor(text=held.questions, padding=True, return_tensors="np")
    answer_ids = _trim(
        run.numpy(
            answerer.generate(
                input_ids=run.tensor(question["input_ids"]),
                pixel_values=run.tensor(pixels),
                attention_mask=run.tensor(question["attention_mask"]),
                max_new_tokens=max_new_tokens,
            )
        )
    )
    answer_logits = run.numpy(
        answerer(
            input_ids=run.tensor(question["input_ids"]),
            pixel_values=run.tensor(pixels),
            attention_mask=run.tensor(question["attention_mask"]),
            decoder_input_ids=run.tensor(answer_ids),
        ).logits
    )

    matcher = getattr(package, prefix + MATCHER).from_pretrained(models_dir / MATCHER)
    texts = [scene.caption for scene in held.scenes] + held.negatives
    pairs = processor(text=texts, padding=True, return_tensors="np")
    both = run.tensor(np.concatenate([pixels, pixels]))
    ids, mask = run.tensor(pairs["input_ids"]), run.tensor(pairs["attention_mask"])
    itm = run.numpy(matcher(input_ids=ids, pixel_values=both, attention_mask=mask, use_itm_head=True).itm_score)
    probability = _softmax(itm)[:, 1]
    cosine = np.diagonal(
        run.numpy(matcher(input_ids=ids, pixel_values=both, attention_mask=mask, use_itm_head=False).itm_score)
    )
    count = len(held.images)
    return DemoRun(
        captions=processor.batch_decode(caption_ids, skip_special_tokens=True),
        caption_ids=caption_ids,
        caption_logits=caption_logits,
        answers=processor.batch_decode(answer_ids, skip_special_tokens=True),
        answer_ids=answer_ids,
        answer_logits=answer_logits,
        match_probability=np.stack([probability[:count], probability[count:]], axis=1),
        match_cosine=np.stack([cosine[:count], cosine[count:]], axis=1),
    )


def _trim(ids: np.ndarray) -> np.ndarray:
    """Drop the columns that are padding (id 0) in every row, so both frameworks' ids compare."""
    used = np.flatnonzero((ids != 0).any(axis=0))
    return ids[:, : used[-1] + 1] if len(used) else ids


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def framework_calls(framework: str) -> Any:
    """What running a model needs of a framework ("pt" or "tf"): `inference()` (a no-grad context), `tensor(array)`
    and `numpy(tensor)` (float32 for any float dtype, bfloat16 included)."""
    return _TorchCalls() if framework == "pt" else _TensorFlowCalls()


class _TorchCalls:
    def __init__(self) -> None:
        import torch

        self.torch = torch

    def inference(self):
        return self.torch.no_grad()

    def tensor(self, array: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(array))

    def numpy(self, tensor) -> np.ndarray:
        return tensor.detach().float().numpy() if tensor.is_floating_point() else tensor.numpy()


class _TensorFlowCalls:
    def inference(self):
        return contextlib.nullcontext()

    def tensor(self, array: np.ndarray) -> np.ndarray:
        return array  # the Keras models take NumPy

    def numpy(self, tensor) -> np.ndarray:
        array = np.asarray(tensor)
        return array.astype(np.float32) if array.dtype.kind == "f" or array.dtype.name == "bfloat16" else array
