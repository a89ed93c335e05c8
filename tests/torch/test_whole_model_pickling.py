"""A whole `blip_torch` model pickles (`torch.save(model)`, `copy.deepcopy`, a model handed to a spawned process):
every class, memory-mapped weights and int8 layers included, and the copy computes the same numbers."""

from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch

import blip_torch
from blip_core.checkpoints.sources import save_safetensors
from blip_core.weights import saved_names
from tests.helpers.tiny import config_for, seeded_weights, sub_config, tiny_config

CLASSES = (
    "BlipModel",
    "BlipForConditionalGeneration",
    "BlipForQuestionAnswering",
    "BlipForImageTextRetrieval",
    "BlipVisionModel",
    "BlipTextModel",
    "BlipTextLMHeadModel",
)


def _saved(class_name: str, folder):
    config = config_for(class_name) if class_name == "BlipForQuestionAnswering" else tiny_config()
    sub = sub_config(class_name, config)
    weights = seeded_weights(class_name, config)
    save_safetensors(folder / "model.safetensors", {n: weights[n] for n in saved_names(list(weights), class_name, sub)})
    sub.save_pretrained(folder)
    return folder


def _same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> None:
    left, right = a.state_dict(), b.state_dict()
    assert list(left) == list(right)
    for name in left:
        assert torch.equal(left[name], right[name]), name


@pytest.mark.parametrize("class_name", CLASSES)
def test_every_class_pickles_whole(class_name, tmp_path) -> None:
    model = getattr(blip_torch, class_name).from_pretrained(_saved(class_name, tmp_path))
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    for copied in (torch.load(buffer, weights_only=False), pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert type(copied) is type(model)
        _same_parameters(copied, model)


@pytest.mark.parametrize("quantization", [None, "int8"])
def test_a_pickled_captioner_generates_the_same_ids(quantization, tmp_path) -> None:
    folder = _saved("BlipForConditionalGeneration", tmp_path)
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(folder, quantization=quantization)
    size = model.config.vision_config.image_size
    pixels = torch.from_numpy(np.random.RandomState(0).rand(2, 3, size, size).astype(np.float32))
    copied = pickle.loads(pickle.dumps(model))
    with torch.no_grad():
        expected = model.generate(pixel_values=pixels, max_new_tokens=6)
        assert torch.equal(copied.generate(pixel_values=pixels, max_new_tokens=6), expected)
