"""bfloat16 decoding in both trees: TensorFlow decodes a bfloat16 model in a graph without XLA on CPUs with
bfloat16 units (XLA on CPU has no fast bfloat16 product, `blip_tf.generation.use_xla`) and in XLA elsewhere; both
paths give the demo captioner's float32 captions, greedy and beam, the same as `blip_torch` in bfloat16, and the
choice follows the CPU (simulated here, so every machine runs both paths)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import blip_tf
import blip_torch
from blip_core.demo.tasks import CAPTIONER, DEMO_MODELS_DIR, held_out
from blip_core.processing.processor import BlipProcessor
from blip_tf import generation

FOLDER = DEMO_MODELS_DIR / CAPTIONER
IMAGES = 6


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    processor = BlipProcessor.from_pretrained(FOLDER)
    return processor(images=held_out(IMAGES, start=2000).images, return_tensors="np")["pixel_values"]


@pytest.fixture(scope="module")
def torch_ids(pixels) -> dict[str, np.ndarray]:
    found = {}
    for dtype in ("float32", "bfloat16"):
        model = blip_torch.BlipForConditionalGeneration.from_pretrained(FOLDER, torch_dtype=dtype)
        inputs = torch.from_numpy(pixels).to(getattr(torch, dtype))
        with torch.no_grad():
            found[f"{dtype} greedy"] = model.generate(pixel_values=inputs, max_new_tokens=12).numpy()
            found[f"{dtype} beam"] = model.generate(pixel_values=inputs, max_new_tokens=12, num_beams=3).numpy()
    return found


@pytest.mark.parametrize("bf16_units", [True, False], ids=["bf16 units: graph", "emulated: XLA"])
def test_tf_bf16_captions_equal_torch_bf16_and_fp32(bf16_units, pixels, torch_ids, monkeypatch) -> None:
    monkeypatch.setattr(generation, "native_bf16", lambda: bf16_units)
    model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(FOLDER, dtype="bfloat16")
    assert generation.use_xla(model.text_decoder) is not bf16_units
    for search, extra in (("greedy", {}), ("beam", {"num_beams": 3})):
        ids = model.generate(pixel_values=pixels, max_new_tokens=12, **extra).numpy()
        assert np.array_equal(ids, torch_ids[f"bfloat16 {search}"]), search
        assert np.array_equal(ids, torch_ids[f"float32 {search}"]), search


def test_float32_always_compiles_with_xla(monkeypatch) -> None:
    monkeypatch.setattr(generation, "native_bf16", lambda: True)
    model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(FOLDER)
    assert generation.use_xla(model.text_decoder)
