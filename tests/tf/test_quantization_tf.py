"""Int8 weight-only decoding in blip_tf: bounded drift against float32, the same numbers eager and under XLA,
bfloat16 models, and the errors of `quantize`/`from_pretrained(quantization=)`/`save_pretrained`."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from blip_tf import TFBlipForConditionalGeneration, TFBlipForImageTextRetrieval, TFBlipForQuestionAnswering
from blip_tf.layers import TFLinear
from blip_tf.quantization import int8_product
from tests.helpers.generation_runs import checkpoint

IDS = np.array([[1, 54, 3, 7, 2], [1, 29, 16, 2, 5]], np.int64)
# Int8 weights (relative error up to 1/254 per weight) and bfloat16 activations (2^-9): the logits of the
# small decoders move by a few percent of their range at most (observed ~1%).
DRIFT_BOUND = 5e-2


def _captioner(**kwargs) -> TFBlipForConditionalGeneration:
    return TFBlipForConditionalGeneration.from_pretrained(
        checkpoint("BlipForConditionalGeneration", "varied"), **kwargs
    )


def _pixels(model) -> np.ndarray:
    size = model.config.vision_config.image_size
    return np.random.RandomState(5).randn(2, 3, size, size).astype(np.float32)


def test_int8_product_mirrors_the_weight_only_kernel():
    """bfloat16 activations x int8 weights, float32 accumulation, times bfloat16 scales, rounded to bfloat16."""
    rng = np.random.RandomState(0)
    flat = tf.cast(rng.randn(3, 64).astype(np.float32), tf.bfloat16)
    weight = rng.randint(-127, 128, (64, 40)).astype(np.int8)
    scale = tf.cast(rng.rand(40).astype(np.float32) / 50, tf.bfloat16)
    exact = flat.numpy().astype(np.float64) @ weight.astype(np.float64) * scale.numpy().astype(np.float64)
    found = int8_product(flat, tf.constant(weight), scale)
    assert found.dtype == tf.bfloat16
    assert np.abs(found.numpy().astype(np.float64) - exact).max() <= 2**-8 * np.abs(exact).max()
    wide = int8_product(tf.tile(flat, (20, 1)), tf.constant(weight), scale)  # > 32 rows: widened bfloat16 GEMM
    assert np.abs(wide.numpy()[:3].astype(np.float64) - exact).max() <= 2**-7 * np.abs(exact).max()


def test_int8_logits_drift_from_float32_is_bounded():
    reference, quantized = _captioner(), _captioner(quantization="int8")
    pixels = _pixels(reference)
    expected = reference(pixels, IDS).logits.numpy()
    found = quantized(pixels, IDS).logits.numpy()
    assert found.dtype == np.float32
    drift = np.abs(found - expected).max()
    assert 0 < drift <= DRIFT_BOUND * np.abs(expected).max()


def test_int8_eager_and_xla_agree():
    model = _captioner(quantization="int8")
    pixels = _pixels(model)
    eager = model(pixels, IDS).logits
    compiled = tf.function(lambda p, i: model(p, i).logits, jit_compile=True)(pixels, IDS)
    assert np.abs(eager.numpy() - compiled.numpy()).max() <= 1e-2 * np.abs(eager.numpy()).max()


def test_bfloat16_model_with_int8_decoder():
    model = _captioner(dtype="bfloat16", quantization="int8")
    reference = _captioner()
    layer = model.text_decoder.cls.predictions.decoder
    assert layer.weight_int8.dtype == "int8" and layer.weight_scale.dtype == "float32"
    pixels = _pixels(model)
    logits = model(pixels, IDS).logits
    assert logits.dtype == tf.bfloat16
    expected = reference(pixels, IDS).logits.numpy()
    assert np.abs(tf.cast(logits, tf.float32).numpy() - expected).max() <= 2 * DRIFT_BOUND * np.abs(expected).max()
    ids = model.generate(pixels, max_new_tokens=6).numpy()
    assert ids.shape == (2, 7) and (ids >= 0).all() and (ids < model.config.text_config.vocab_size).all()


def test_quantized_layers_and_memory():
    model = _captioner()
    before = model.get_memory_footprint()
    model.quantize("int8")
    layers = [layer for layer in model._flatten_layers(recursive=True) if isinstance(layer, TFLinear)]
    quantized = [layer for layer in layers if layer.quantized]
    assert len(quantized) == 22 and all(layer.kernel is None for layer in quantized)
    assert all(layer.kernel is not None for layer in layers if not layer.quantized)
    weights = sum(layer.in_features * layer.out_features for layer in quantized)
    assert before - model.get_memory_footprint() >= 3 * weights - 6 * sum(layer.out_features for layer in quantized)


@pytest.mark.parametrize("cls", [TFBlipForConditionalGeneration, TFBlipForQuestionAnswering])
def test_quantize_errors(cls, tmp_path):
    folder = checkpoint(cls.__name__.removeprefix("TF"), "plain")
    with pytest.raises(ValueError, match="int4"):
        cls.from_pretrained(folder, quantization="int4")
    model = cls.from_pretrained(folder)
    with pytest.raises(ValueError, match="not supported"):
        model.quantize("float8")
    with pytest.raises(TypeError):
        model.quantize("int8", filters=["text_decoder"])  # Keras' options: the layers quantized are fixed
    model.quantize("int8")
    with pytest.raises(ValueError, match="already quantized"):
        model.quantize("int8")
    with pytest.raises(ValueError, match="quantized"):
        model.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved").exists()


def test_retrieval_class_refuses_quantization(tiny_checkpoints):
    folder = tiny_checkpoints["BlipForImageTextRetrieval"]
    with pytest.raises(ValueError, match="has none"):
        TFBlipForImageTextRetrieval.from_pretrained(folder, quantization="int8")
    model = TFBlipForImageTextRetrieval.from_pretrained(folder)
    with pytest.raises(ValueError, match="has none"):
        model.quantize("int8")
    assert not any(getattr(layer, "quantized", False) for layer in model._flatten_layers(recursive=True))
