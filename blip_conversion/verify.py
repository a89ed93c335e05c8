"""`blip-convert verify`: run one checkpoint through blip_torch and blip_tf and compare every output.

The same image (and prompt or question) goes through both frameworks; the
report lists the largest difference of each output, scaled like the test
suite's bound (absolute, relative above 1), and the generated text of each.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blip_conversion.convert import load_config
from blip_core.processing.image_processing import BlipImageProcessor
from blip_core.processing.processor import BlipProcessor
from blip_core.processing.tokenization import BUNDLED_VOCAB_FILE, BlipTokenizer
from blip_core.weights.names import MODEL_CLASSES

TOLERANCE = 1e-4
DEFAULT_TEXT = {"BlipForQuestionAnswering": "what is in the picture?", "BlipForConditionalGeneration": "a picture of"}


@dataclass
class Report:
    class_name: str
    differences: dict[str, float] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    ids_equal: bool = True

    @property
    def passed(self) -> bool:
        return self.ids_equal and all(d <= TOLERANCE for d in self.differences.values())

    def table(self) -> str:
        lines = [
            f"{self.class_name}: {'PASS' if self.passed else 'FAIL'} (bound {TOLERANCE:g})",
            "| output | max difference |",
            "|---|---|",
        ]
        lines += [f"| {name} | {value:.2e} |" for name, value in sorted(self.differences.items())]
        lines += [f"{framework}: {text!r}" for framework, text in self.texts.items()]
        if not self.ids_equal:
            lines.append("generated ids differ between the frameworks")
        return "\n".join(lines)


def test_card() -> np.ndarray:
    """The image verified when none is given: a colourful 120x160 card (gradients and a disc), so
    every patch and channel differs."""
    y, x = np.mgrid[0:120, 0:160]
    image = np.stack([x * 255 / 160, y * 255 / 120, np.full_like(x, 90)], axis=-1)
    image[(y - 60) ** 2 + (x - 80) ** 2 < 30**2] = (230, 40, 40)
    return image.astype(np.uint8)


def _flatten(value: Any, prefix: str = "") -> dict[str, np.ndarray]:
    if value is None:
        return {}
    if isinstance(value, dict):
        out: dict[str, np.ndarray] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, (list, tuple)):
        out = {}
        for index, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{index}]"))
        return out
    if hasattr(value, "detach"):
        return {prefix: value.detach().float().cpu().numpy()}
    if hasattr(value, "numpy") and hasattr(value, "dtype"):
        return {prefix: np.asarray(value.numpy(), dtype=np.float64)}
    return {}


def _processor(source: str, config: Any, hub: dict) -> BlipProcessor:
    try:
        return BlipProcessor.from_pretrained(source, **hub)
    except (OSError, ValueError):  # weights-only folder: BLIP's own processor at the model's size
        size = getattr(getattr(config, "vision_config", config), "image_size", 384)
        return BlipProcessor(BlipImageProcessor(size=size), BlipTokenizer(vocab_file=BUNDLED_VOCAB_FILE))


def _inputs(class_name: str, processor: BlipProcessor, image: Any, text: str | None) -> dict[str, np.ndarray]:
    text = text or DEFAULT_TEXT.get(class_name, "a photo of a cat")
    encoded = processor(images=image, text=text, return_tensors="np")
    if class_name == "BlipVisionModel":
        return {"pixel_values": encoded["pixel_values"]}
    if class_name in ("BlipTextModel", "BlipTextLMHeadModel"):
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    if class_name == "BlipForQuestionAnswering":
        bos = np.full((1, 1), 30522, np.int64)
        return {**encoded, "decoder_input_ids": bos}
    return dict(encoded)


def _run(model: Any, framework: str, inputs: dict[str, np.ndarray]) -> Any:
    if framework == "torch":
        import torch

        with torch.no_grad():
            return model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return model(**inputs)


def _generate(model: Any, framework: str, class_name: str, inputs: dict[str, np.ndarray]) -> np.ndarray | None:
    options = {"max_new_tokens": 20}
    if framework == "torch":
        import torch

        tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
    else:
        tensors = dict(inputs)
    if class_name == "BlipForConditionalGeneration":
        return np.asarray(model.generate(tensors["pixel_values"], **options))
    if class_name == "BlipForQuestionAnswering":
        return np.asarray(
            model.generate(
                tensors["input_ids"], tensors["pixel_values"], attention_mask=tensors["attention_mask"], **options
            )
        )
    return None


def verify(source: str | os.PathLike, image: Any = None, text: str | None = None, hub: dict | None = None) -> Report:
    """Load `source` in both frameworks, run the same inputs, compare every output and the generated ids."""
    import blip_tf
    import blip_torch

    hub = dict(hub or {})
    config, class_name = load_config(source, hub)
    if class_name not in MODEL_CLASSES:
        raise ValueError(f"cannot tell the model class of {source} (config.json architectures: {class_name!r})")
    processor = _processor(str(source), config, hub)
    inputs = _inputs(class_name, processor, image if image is not None else test_card(), text)
    torch_model = getattr(blip_torch, class_name).from_pretrained(source, **hub)
    tf_model = getattr(blip_tf, "TF" + class_name).from_pretrained(source, **hub)
    report = Report(class_name)
    expected, actual = _flatten(_run(torch_model, "torch", inputs)), _flatten(_run(tf_model, "tf", inputs))
    for name, value in expected.items():
        other = actual.get(name)
        if other is None or other.shape != value.shape:
            report.differences[name] = float("inf")
            continue
        report.differences[name] = (
            float(np.max(np.abs(other - value) / np.maximum(1.0, np.abs(value)))) if value.size else 0.0
        )
    ids = {
        f"blip_{framework}": _generate(model, framework, class_name, inputs)
        for framework, model in (("torch", torch_model), ("tf", tf_model))
    }
    if ids["blip_torch"] is not None:
        report.ids_equal = np.array_equal(ids["blip_torch"], ids["blip_tf"])
        report.texts = {
            framework: processor.decode(value[0], skip_special_tokens=True) for framework, value in ids.items()
        }
    return report
