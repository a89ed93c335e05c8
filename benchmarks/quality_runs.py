"""The embedded demo models run in one precision/quantization mode, in one framework, as NumPy: the helper of
`benchmarks/quality_modes.py` (and of the mode drift tests).

A mode is a weight dtype (float32, bfloat16) and whether the text decoder's linear layers are int8
(`quantization="int8"`). The matcher (`BlipForImageTextRetrieval`) has no text decoder, so int8 does not apply to
it: an int8 mode's ITM figures are those of its dtype alone, and say so.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.demo.runs import framework_calls
from blip_core.demo.tasks import ANSWERER, CAPTIONER, DEMO_MODELS_DIR, MATCHER, HeldOut
from blip_core.processing.processor import BlipProcessor

PACKAGES = {"pt": "blip_torch", "tf": "blip_tf"}


@dataclass(frozen=True)
class Mode:
    """A precision/quantization mode: the weights' dtype and whether decoding is int8."""

    name: str
    dtype: str  # "float32" or "bfloat16"
    int8: bool


MODES = (
    Mode("fp32", "float32", False),
    Mode("bf16", "bfloat16", False),
    Mode("int8", "float32", True),
    Mode("bf16+int8", "bfloat16", True),
)


class ModeUnavailable(Exception):
    """A framework does not offer this mode (e.g. int8 where it is not built): the mode is skipped."""


@dataclass
class ModeRun:
    """One mode's outputs on a held-out set (ids trimmed of all-padding columns)."""

    captions: list[str]
    caption_ids: np.ndarray  # (N, L) int
    answers: list[str]
    answer_ids: np.ndarray  # (N, L') int
    match_probability: np.ndarray  # (N, 2) float: ITM P(match) of the true caption and of the altered one


def load(framework: str, class_name: str, folder: Path, mode: Mode) -> Any:
    """`<class>.from_pretrained(folder)` in `mode` ("pt": `torch_dtype=`, "tf": `dtype=`; `quantization="int8"`).

    Raises:
        ValueError: an unknown framework.
        ModeUnavailable: the framework loads the model but does not quantize it (int8 not built there yet).
    """
    if framework not in PACKAGES:
        raise ValueError(f"framework must be 'pt' or 'tf', got {framework!r}")
    package = importlib.import_module(PACKAGES[framework])
    cls = getattr(package, ("" if framework == "pt" else "TF") + class_name)
    kwargs: dict[str, Any] = {"torch_dtype" if framework == "pt" else "dtype": mode.dtype}
    if mode.int8:
        kwargs["quantization"] = "int8"
    try:
        model = cls.from_pretrained(folder, **kwargs)
    except TypeError as error:  # an option the framework does not know
        raise ModeUnavailable(f"{cls.__name__}.from_pretrained({kwargs}): {error}") from error
    if mode.int8 and getattr(model, "quantization", None) != "int8":
        raise ModeUnavailable(f"{cls.__name__}.from_pretrained(quantization='int8') did not quantize the model")
    return model


def run_mode(
    framework: str, mode: Mode, held: HeldOut, models_dir: Path = DEMO_MODELS_DIR, max_new_tokens: int = 12
) -> ModeRun:
    """Caption, answer (greedy) and match `held` with the demo models in `mode`.

    Raises:
        ModeUnavailable: the framework lacks the mode.
    """
    calls = framework_calls(framework)
    processor = BlipProcessor.from_pretrained(models_dir / CAPTIONER)
    pixels = processor(images=held.images, return_tensors="np")["pixel_values"]
    question = processor(text=held.questions, padding=True, return_tensors="np")
    with calls.inference():
        captioner = load(framework, CAPTIONER, models_dir / CAPTIONER, mode)
        caption_ids = trim(calls.numpy(captioner.generate(calls.tensor(pixels), max_new_tokens=max_new_tokens)))
        answerer = load(framework, ANSWERER, models_dir / ANSWERER, mode)
        answer_ids = answerer.generate(
            input_ids=calls.tensor(question["input_ids"]),
            pixel_values=calls.tensor(pixels),
            attention_mask=calls.tensor(question["attention_mask"]),
            max_new_tokens=max_new_tokens,
        )
        answer_ids = trim(calls.numpy(answer_ids))
        matcher = load(framework, MATCHER, models_dir / MATCHER, Mode(mode.dtype, mode.dtype, False))
        probability = _match_probability(calls, processor, matcher, held, pixels)
    return ModeRun(
        captions=processor.batch_decode(caption_ids, skip_special_tokens=True),
        caption_ids=caption_ids,
        answers=processor.batch_decode(answer_ids, skip_special_tokens=True),
        answer_ids=answer_ids,
        match_probability=probability,
    )


def _match_probability(calls, processor: BlipProcessor, matcher, held: HeldOut, pixels: np.ndarray) -> np.ndarray:
    """(N, 2) ITM P(match) of each image with its true caption and with its altered one."""
    texts = [scene.caption for scene in held.scenes] + held.negatives
    pairs = processor(text=texts, padding=True, return_tensors="np")
    scores = matcher(
        input_ids=calls.tensor(pairs["input_ids"]),
        pixel_values=calls.tensor(np.concatenate([pixels, pixels])),
        attention_mask=calls.tensor(pairs["attention_mask"]),
        use_itm_head=True,
    ).itm_score
    logits = calls.numpy(scores).astype(np.float64)
    probability = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probability = (probability / probability.sum(axis=-1, keepdims=True))[:, 1]
    count = len(held.images)
    return np.stack([probability[:count], probability[count:]], axis=1)


def trim(ids: np.ndarray) -> np.ndarray:
    """Drop the columns that are padding (id 0) in every row."""
    used = np.flatnonzero((ids != 0).any(axis=0))
    return ids[:, : used[-1] + 1] if len(used) else ids


def same_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) bool: whether row i of `a` equals row i of `b`, both right-padded with 0 to one width.

    Raises:
        ValueError: different row counts.
    """
    if len(a) != len(b):
        raise ValueError(f"same_rows: {len(a)} rows against {len(b)}")
    width = max(a.shape[1], b.shape[1])
    padded = [np.pad(x, ((0, 0), (0, width - x.shape[1]))) for x in (a, b)]
    return (padded[0] == padded[1]).all(axis=1)
