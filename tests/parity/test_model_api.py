"""The model methods `transformers` programs call, in both trees, with `transformers` 4.57.6's values on the same
checkpoints (golden: tests/tools/make_model_api_golden.py): parameter counts, memory footprint, `name_or_path`,
`config.dtype` after loading, gradient-checkpointing flags, input-gradient hooks, output embeddings."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch

import blip_tf
import blip_torch
from tests.helpers.golden import FIXTURES, load_json

GOLDEN = load_json("model_api.json")["models"]
FOLDERS = {
    "BlipForConditionalGeneration": FIXTURES / "hf_checkpoints" / "caption_safetensors",
    "BlipForQuestionAnswering": FIXTURES / "hf_checkpoints" / "vqa_safetensors",
}
ITM = FIXTURES / "hf_checkpoints" / "itm_bin"


def load(framework: str, class_name: str, **kwargs):
    module = blip_torch if framework == "pt" else blip_tf
    prefix = "" if framework == "pt" else "TF"
    folder = ITM if class_name == "BlipForImageTextRetrieval" else FOLDERS[class_name]
    return getattr(module, prefix + class_name).from_pretrained(str(folder), **kwargs)


def freeze_vision(model) -> None:
    if isinstance(model, torch.nn.Module):
        model.vision_model.requires_grad_(False)
    else:
        model.vision_model.trainable = False


@pytest.mark.parametrize("framework", ["pt", "tf"])
@pytest.mark.parametrize("class_name", sorted(FOLDERS))
def test_counts_footprint_name_and_dtype_match_transformers(framework, class_name):
    want = GOLDEN[class_name]
    model = load(framework, class_name)
    assert model.num_parameters() == want["num_parameters"]
    assert model.num_parameters(only_trainable=True) == want["only_trainable"]
    assert model.num_parameters(exclude_embeddings=True) == want["exclude_embeddings"]
    assert model.get_memory_footprint(return_buffers=False) == want["footprint_without_buffers"]
    assert model.get_memory_footprint() == want["footprint_without_buffers"]  # no buffers here (transformers: +ids)
    assert model.name_or_path == str(FOLDERS[class_name]) and model.name_or_path.endswith(want["name_or_path"])
    assert str(model.config.dtype).replace("torch.", "") == want["config_dtype"].replace("torch.", "")
    assert "name_or_path" not in model.config.to_dict()  # never written to config.json
    freeze_vision(model)
    assert model.num_parameters(only_trainable=True) == want["only_trainable_frozen_vision"]
    half = load(framework, class_name, dtype="float16")
    assert half.get_memory_footprint() == want["half_footprint_without_buffers"]
    assert half.config.to_dict()["dtype"] == want["half_saved_dtype"]
    expected_dtype = torch.float16 if framework == "pt" else "float16"
    assert half.config.dtype == expected_dtype and half.config.torch_dtype == expected_dtype


def test_gradient_checkpointing_flags():
    model = load("pt", "BlipForConditionalGeneration")
    assert (
        model.supports_gradient_checkpointing
        is GOLDEN["BlipForConditionalGeneration"]["supports_gradient_checkpointing"]
    )
    assert not model.is_gradient_checkpointing
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing is GOLDEN["BlipForConditionalGeneration"]["is_gradient_checkpointing"]
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    tf_model = load("tf", "BlipForConditionalGeneration")
    assert tf_model.supports_gradient_checkpointing is False and tf_model.is_gradient_checkpointing is False


def test_input_require_grads_reach_frozen_embeddings():
    model = load("pt", "BlipForConditionalGeneration")
    model.requires_grad_(False)
    ids = torch.tensor([[1, 2, 3]])
    assert not model.get_input_embeddings()(ids).requires_grad
    model.enable_input_require_grads()
    assert model.get_input_embeddings()(ids).requires_grad
    model.disable_input_require_grads()
    assert not model.get_input_embeddings()(ids).requires_grad
    tf_model = load("tf", "BlipForConditionalGeneration")
    for frozen in (model, tf_model):
        with pytest.raises(AttributeError, match=r"enable_input_require_grads\(\) was not called"):
            type(frozen).from_pretrained(str(FOLDERS["BlipForConditionalGeneration"])).disable_input_require_grads()
    tf_model.enable_input_require_grads()
    tf_model.disable_input_require_grads()


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_output_embeddings_get_and_set(framework):
    model = load(framework, "BlipForConditionalGeneration")
    head = model.get_output_embeddings()
    assert head is model.text_decoder.cls.predictions.decoder  # transformers 4.57: None for this class
    ids = np.array([[1, 2]])
    pixels = np.zeros((1, 3, 40, 40), np.float32)
    if framework == "pt":
        vocab = head.out_features
        zero = torch.nn.Linear(head.in_features, vocab)
        torch.nn.init.zeros_(zero.weight), torch.nn.init.constant_(zero.bias, 2.0)
        model.set_output_embeddings(zero)
        logits = model(pixel_values=torch.from_numpy(pixels), input_ids=torch.from_numpy(ids)).logits.detach().numpy()
    else:
        vocab = head.out_features
        zero = blip_tf.layers.TFLinear(head.in_features, vocab)
        zero.build()
        zero.kernel.assign(np.zeros(zero.kernel.shape, np.float32))
        zero.bias.assign(np.full((vocab,), 2.0, np.float32))
        model.set_output_embeddings(zero)
        logits = keras.ops.convert_to_numpy(model(pixel_values=pixels, input_ids=ids).logits)
    assert model.get_output_embeddings() is zero
    added = head.in_features * vocab + vocab  # the new layer's kernel and bias; the head's own bias stays
    assert model.num_parameters() == GOLDEN["BlipForConditionalGeneration"]["num_parameters"] + added
    np.testing.assert_allclose(logits, 2.0)
    retrieval = load(framework, "BlipForImageTextRetrieval")
    assert retrieval.get_output_embeddings() is None
    with pytest.raises(AttributeError, match="BlipForImageTextRetrieval has no LM head"):
        retrieval.set_output_embeddings(zero)


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_single_device_maps_load_and_missing_devices_are_named(framework, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)  # a CPU-only torch, on any machine
    caption = "BlipForConditionalGeneration"
    reference = load(framework, caption).num_parameters()
    for device_map in ({"": "cpu"}, {"vision_model": "cpu", "text_decoder": "cpu"}, "cpu", "auto", "sequential"):
        assert load(framework, caption, device_map=device_map).num_parameters() == reference, device_map
    missing = "cuda" if framework == "pt" else "cuda:7"  # TF: no such device, GPU build or not
    for options in ({"device": missing}, {"device_map": missing}, {"device_map": {"": missing}}):
        with pytest.raises(ValueError, match=r"device '(cuda|/GPU:7)'.* not available"):
            load(framework, caption, **options)
    with pytest.raises(ValueError, match="multi-device maps are not supported: a model loads on one device"):
        load(framework, caption, device_map={"vision_model": "cpu", "text_decoder": 0})
    with pytest.raises(ValueError, match=r"device_map=\['vision_model'\] gives no device to 63 parameters"):
        load(framework, caption, device_map={"vision_model": "cpu"})
    with pytest.raises(ValueError, match="offloading to 'disk' is not supported"):
        load(framework, caption, device_map={"": "disk"})
