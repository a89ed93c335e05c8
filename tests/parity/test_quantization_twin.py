"""Int8 weight-only decoding in both trees: the same int8 numbers from the same checkpoint, the same generated ids,
and teacher-forced logits within a bfloat16 bound (both round activations, scales and products to bfloat16;
only the float32 accumulation order differs between the kernels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blip_core.modeling.quantization import is_quantized_module
from tests.helpers.generation_runs import checkpoint

CLASSES = ["BlipForConditionalGeneration", "BlipForQuestionAnswering"]
VARIANTS = ["plain", "varied"]  # tied and untied LM head
PROMPTS = np.array([[1, 54, 3, 7, 2], [1, 29, 16, 2, 0]], np.int64)
# Logits: products rounded to bfloat16 (relative 2^-8) in every layer of the decoder; one rounding that falls the
# other way changes a logit by about that much times its scale, so a relative bound of 2% of the largest logit
# holds with room on every CPU (observed: under 0.5%).
RELATIVE_BOUND = 2e-2


def _load(framework: str, class_name: str, variant: str, **kwargs):
    if framework == "pt":
        import blip_torch

        return getattr(blip_torch, class_name).from_pretrained(checkpoint(class_name, variant), **kwargs)
    import blip_tf

    return getattr(blip_tf, "TF" + class_name).from_pretrained(checkpoint(class_name, variant), **kwargs)


def _pixels(model) -> np.ndarray:
    size = model.config.vision_config.image_size
    return np.random.RandomState(3).randn(2, 3, size, size).astype(np.float32)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("class_name", CLASSES)
def test_int8_weights_are_identical(class_name, variant):
    model_pt = _load("pt", class_name, variant, quantization="int8")
    model_tf = _load("tf", class_name, variant, quantization="int8")
    from blip_torch.quantization import Int8Linear

    quantized = {name: module for name, module in model_pt.named_modules() if isinstance(module, Int8Linear)}
    assert len(quantized) == 22 and all(is_quantized_module(name) for name in quantized)
    for name, module in quantized.items():
        layer, _ = model_tf.owner_of(name + ".weight", "linear")
        assert layer.quantized and layer.kernel is None, name
        assert layer.weight_int8.dtype == "int8" and tuple(layer.weight_int8.shape) == tuple(module.weight_int8.T.shape)
        assert np.array_equal(layer.weight_int8.numpy(), module.weight_int8.numpy().T), name
        assert np.array_equal(layer.weight_scale.numpy(), module.weight_scale.numpy()), name
    vision, _ = model_tf.owner_of("vision_model.encoder.layers.0.mlp.fc1.weight", "linear")
    assert not vision.quantized and vision.kernel.dtype == "float32"  # the vision encoder keeps its precision
    assert model_pt.quantization == model_tf.quantization == "int8"


def _teacher_forced(framework: str, model, class_name: str) -> np.ndarray:
    """Logits of one decoder pass over the prompts (captioning: the model's call; VQA: the answer decoder
    over the image features)."""
    pixels, ids = _pixels(model), PROMPTS
    mask = (ids > 0).astype(np.int64)
    if framework == "pt":
        with torch.no_grad():
            if class_name == CLASSES[0]:
                return model(torch.from_numpy(pixels), torch.from_numpy(ids), torch.from_numpy(mask)).logits.numpy()
            states = model.vision_model(torch.from_numpy(pixels)).last_hidden_state
            out = model.text_decoder(
                input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), encoder_hidden_states=states
            )
            return out.logits.float().numpy()
    if class_name == CLASSES[0]:
        return model(pixels, ids, mask).logits.numpy()
    states = model.vision_model(pixels).last_hidden_state
    return model.text_decoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=states).logits.numpy()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("class_name", CLASSES)
def test_int8_logits_agree(class_name, variant):
    found = {
        fw: _teacher_forced(fw, _load(fw, class_name, variant, quantization="int8"), class_name) for fw in ("pt", "tf")
    }
    reference = _teacher_forced("pt", _load("pt", class_name, variant), class_name)
    scale = np.abs(found["pt"]).max()
    assert np.abs(found["tf"] - found["pt"]).max() <= RELATIVE_BOUND * scale
    assert np.abs(found["pt"] - reference).max() > 0  # quantized: not the float32 numbers


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("class_name", CLASSES)
def test_int8_generated_ids_agree(class_name, variant):
    model_pt = _load("pt", class_name, variant, quantization="int8")
    model_tf = _load("tf", class_name, variant, quantization="int8")
    pixels = _pixels(model_pt)
    kwargs = {"max_new_tokens": 8}
    if class_name == CLASSES[1]:
        kwargs.update(input_ids=PROMPTS[:, :4], max_new_tokens=6)
    with torch.no_grad():
        pt_kwargs = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        ids_pt = model_pt.generate(pixel_values=torch.from_numpy(pixels), **pt_kwargs).numpy()
    ids_tf = model_tf.generate(pixel_values=pixels, **kwargs).numpy()
    assert ids_pt.shape[1] > 2 and np.array_equal(ids_pt, ids_tf), (ids_pt, ids_tf)


def test_int8_beam_search_ids_agree():
    model_pt = _load("pt", CLASSES[0], "varied", quantization="int8")
    model_tf = _load("tf", CLASSES[0], "varied", quantization="int8")
    pixels = _pixels(model_pt)
    with torch.no_grad():
        ids_pt = model_pt.generate(pixel_values=torch.from_numpy(pixels), num_beams=3, max_new_tokens=7).numpy()
    ids_tf = model_tf.generate(pixel_values=pixels, num_beams=3, max_new_tokens=7).numpy()
    assert np.array_equal(ids_pt, ids_tf), (ids_pt, ids_tf)


def test_quantize_method_equals_loading_quantized():
    loaded = _load("tf", CLASSES[0], "varied", quantization="int8")
    later = _load("tf", CLASSES[0], "varied")
    assert later.quantize("int8") is later
    head, head_later = loaded.text_decoder.cls.predictions.decoder, later.text_decoder.cls.predictions.decoder
    assert np.array_equal(head.weight_int8.numpy(), head_later.weight_int8.numpy())
    pixels = _pixels(loaded)
    assert np.array_equal(loaded.generate(pixels, max_new_tokens=5), later.generate(pixels, max_new_tokens=5))
