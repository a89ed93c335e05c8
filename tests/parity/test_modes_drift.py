"""Each precision/quantization mode of `blip_torch` (bfloat16, int8 weight-only decoding, both) against float32:
logit drift bounded on small seeded checkpoints and on the demo captioner, the demo captioner's ids unchanged (with
the fp32 top-2 logit gap shown to exceed the drift), `Int8Linear` against a float reference, `quantize_int8`'s
properties and the option errors. The mode tests run twice: on this CPU and on a simulated AVX2-only CPU, where
bfloat16 products are emulated (computed in float32). Bounds hold on every CPU: they are set by bfloat16/int8
rounding, several times what was measured (AVX-512 with BF16, and simulated AVX2), never by one kernel's rounding.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import blip_torch
from blip_core.demo.tasks import CAPTIONER, DEMO_MODELS_DIR, held_out
from blip_core.modeling import cpu_features
from blip_core.modeling.quantization import INT8_MAX, quantize_int8
from blip_core.processing.processor import BlipProcessor
from blip_torch import layers
from blip_torch.quantization import INT8_KERNEL_MAX_ROWS, Int8Linear

# mode -> (torch_dtype, quantization)
MODES = {"bf16": ("bfloat16", None), "int8": ("float32", "int8"), "bf16+int8": ("bfloat16", "int8")}
# max |mode - fp32| logit over the fp32 logits' range: measured <= 0.016 (tiny checkpoints) and <= 0.010 (demo
# captioner), natively and emulated.
LOGIT_DRIFT = 0.05
DECODER_CLASSES = ("BlipForConditionalGeneration", "BlipForQuestionAnswering")


@pytest.fixture(params=["this CPU", "AVX2 only"])
def cpu(request, monkeypatch) -> str:
    """This machine's CPU, or a simulated AVX2-only one (no bfloat16 units: emulated products, and the warning)."""
    if request.param == "AVX2 only":
        monkeypatch.setattr(cpu_features, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
        monkeypatch.setattr(cpu_features, "_warned", set())
        monkeypatch.setattr(layers, "cpu_has_low_precision_units", lambda: False)
        assert layers._emulated(torch.zeros(1, dtype=torch.bfloat16))
    return request.param


def _load(cls_name: str, folder, mode: str | None):
    dtype, quantization = MODES[mode] if mode else ("float32", None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="bfloat16 on this CPU is emulated")
        model = getattr(blip_torch, cls_name).from_pretrained(folder, torch_dtype=dtype, quantization=quantization)
    assert model.dtype == getattr(torch, dtype)
    assert any(isinstance(m, Int8Linear) for m in model.modules()) == (quantization == "int8")
    return model


def _tiny_logits(model, cls_name: str) -> torch.Tensor:
    """(3, 7, vocab) float32 logits of seeded images and ids."""
    rng = np.random.RandomState(3)
    pixels = torch.from_numpy(rng.randn(3, 3, 40, 40).astype(np.float32))
    ids = torch.from_numpy(rng.randint(4, 97, size=(3, 7)))
    ids[:, 0] = 97
    with torch.no_grad():
        if cls_name == "BlipForConditionalGeneration":
            return model(pixel_values=pixels, input_ids=ids).logits.float()
        return model(pixel_values=pixels, input_ids=ids, decoder_input_ids=ids).logits.float()


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("cls_name", DECODER_CLASSES)
def test_tiny_checkpoint_logits_drift_is_bounded(tiny_checkpoints, cpu, cls_name, mode):
    folder = tiny_checkpoints[cls_name]
    reference = _tiny_logits(_load(cls_name, folder, None), cls_name)
    logits = _tiny_logits(_load(cls_name, folder, mode), cls_name)
    assert torch.isfinite(logits).all()
    drift = (logits - reference).abs().max().item()
    spread = (reference.max() - reference.min()).item()
    assert 0 < drift <= LOGIT_DRIFT * spread, (drift, spread)  # > 0: the mode did change the arithmetic


@pytest.fixture(scope="module")
def demo_captions():
    """The demo captioner's held-out pixels, and its fp32 greedy ids and teacher-forced logits on them."""
    folder = DEMO_MODELS_DIR / CAPTIONER
    held = held_out(8, start=1000)
    pixels = torch.from_numpy(
        BlipProcessor.from_pretrained(folder)(images=held.images, return_tensors="np")["pixel_values"]
    )
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(folder)
    with torch.no_grad():
        ids = model.generate(pixel_values=pixels, max_new_tokens=12)
        logits = model(pixel_values=pixels, input_ids=ids).logits.float()
    return pixels, ids, logits


@pytest.mark.parametrize("mode", list(MODES))
def test_demo_captioner_ids_equal_fp32_with_margin(demo_captions, cpu, mode):
    pixels, ids, reference = demo_captions
    model = _load(CAPTIONER, DEMO_MODELS_DIR / CAPTIONER, mode)
    with torch.no_grad():
        logits = model(pixel_values=pixels, input_ids=ids).logits.float()
        generated = model.generate(pixel_values=pixels, max_new_tokens=12)
    chosen = ids[:, 1:] != 0  # the positions whose logits chose a generated id
    top2 = reference[:, :-1].topk(2, dim=-1).values
    gap = (top2[..., 0] - top2[..., 1])[chosen].min().item()  # measured 3.5
    drift = (logits - reference)[:, :-1][chosen].abs().max().item()  # measured <= 0.19
    spread = (reference.max() - reference.min()).item()  # 20.2
    assert drift <= LOGIT_DRIFT * spread and 2 * drift < gap, (drift, gap)  # no id can flip
    assert torch.equal(generated, ids)


# -- Int8Linear and quantize_int8 ---------------------------------------------------------------------------------


def _seeded_linear(in_features: int, out_features: int) -> layers.Linear:
    linear = layers.Linear(in_features, out_features)
    rng = np.random.RandomState(in_features)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(rng.randn(out_features, in_features).astype(np.float32)))
        linear.bias.copy_(torch.from_numpy(rng.randn(out_features).astype(np.float32)))
    return linear


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("in_features", [64, 20])  # 20: not a multiple of the kernel's feature block
@pytest.mark.parametrize("rows", [1, 5, INT8_KERNEL_MAX_ROWS, INT8_KERNEL_MAX_ROWS + 1, 70])
def test_int8_linear_matches_float_reference(rows, in_features, dtype):
    linear = _seeded_linear(in_features, 48)
    layer = Int8Linear(linear)
    x = torch.from_numpy(np.random.RandomState(rows).randn(1, rows, in_features).astype(np.float32)).to(dtype)
    with torch.no_grad():
        out = layer(x)
    assert out.dtype == dtype and out.shape == (1, rows, 48)
    q, scale = quantize_int8(linear.weight.detach().numpy())
    weight = q.astype(np.float64) * scale.astype(np.float64)[:, None]  # x @ (q * scale).T, in float64
    inputs = x.to(torch.bfloat16).double().numpy()[0]  # the layer rounds its input to bfloat16
    bias = linear.bias.detach().double().numpy()
    reference = inputs @ weight.T + bias
    # bfloat16 rounding of the scales, of the widened weight, of the product and of the bias sum: 2**-6 of the
    # sum of magnitudes holds them all (each is at most 2**-9 relative); a wrong scale or NaN is far outside.
    bound = 2**-6 * (np.abs(inputs) @ np.abs(weight).T + np.abs(bias))
    error = np.abs(out[0].double().numpy() - reference)
    assert (error <= bound).all(), (error / bound).max()


def test_int8_linear_refuses_gradients_and_takes_empty_batches():
    layer = Int8Linear(_seeded_linear(64, 8))
    with pytest.raises(RuntimeError, match="inference"):
        layer(torch.ones(2, 64, requires_grad=True))
    empty = layer(torch.ones(0, 3, 64))
    assert empty.shape == (0, 3, 8) and empty.dtype == torch.float32


def _weights() -> np.ndarray:
    weight = np.random.RandomState(5).randn(7, 13).astype(np.float32)
    weight[2] = 0.0  # a row of zeros
    weight[4, 3] = 1000.0  # an outlier: that row's scale is large
    return weight


def test_quantize_int8_range_scale_and_error():
    weight = _weights()
    q, scale = quantize_int8(weight)
    assert q.dtype == np.int8 and q.shape == weight.shape and scale.dtype == np.float32 and scale.shape == (7,)
    assert np.abs(q.astype(np.int32)).max() <= INT8_MAX
    nonzero = [row for row in range(7) if row != 2]
    assert (np.abs(q[nonzero].astype(np.int32)).max(axis=1) == INT8_MAX).all()  # each row's absmax maps to 127
    np.testing.assert_allclose(scale[nonzero], np.abs(weight[nonzero]).max(axis=1) / INT8_MAX, rtol=1e-6)
    assert scale[2] == 1.0 and not q[2].any()
    error = np.abs(weight - q.astype(np.float32) * scale[:, None])
    assert (error <= scale[:, None] / 2 * (1 + 1e-5)).all()


def test_quantize_int8_axis_1_is_axis_0_transposed():
    weight = _weights()
    q0, scale0 = quantize_int8(weight, axis=0)
    q1, scale1 = quantize_int8(weight.T.copy(), axis=1)
    assert np.array_equal(q1, q0.T) and np.array_equal(scale1, scale0)


@pytest.mark.parametrize(
    ("weight", "match"),
    [
        (np.ones(5, np.float32), "2-D"),
        (np.ones((2, 3, 4), np.float32), "2-D"),
        (np.array([[1.0, np.nan]], np.float32), "NaN or infinite"),
        (np.array([[1.0, np.inf]], np.float32), "NaN or infinite"),
    ],
)
def test_quantize_int8_refuses_bad_weights(weight, match):
    with pytest.raises(ValueError, match=match):
        quantize_int8(weight)


# -- option errors ------------------------------------------------------------------------------------------------


def test_unknown_mode_is_refused(tiny_checkpoints):
    folder = tiny_checkpoints[CAPTIONER]
    with pytest.raises(ValueError, match="quantization='int4' is not supported"):
        blip_torch.BlipForConditionalGeneration.from_pretrained(folder, quantization="int4")
    with pytest.raises(ValueError, match="quantization='int4' is not supported"):
        blip_torch.BlipForConditionalGeneration.from_pretrained(folder).quantize("int4")


def test_retrieval_model_has_nothing_to_quantize(tiny_checkpoints):
    folder = tiny_checkpoints["BlipForImageTextRetrieval"]
    with pytest.raises(ValueError, match="BlipForImageTextRetrieval has none"):
        blip_torch.BlipForImageTextRetrieval.from_pretrained(folder, quantization="int8")
    with pytest.raises(ValueError, match="BlipForImageTextRetrieval has none"):
        blip_torch.BlipForImageTextRetrieval.from_pretrained(folder).quantize("int8")


def test_quantizing_twice_is_refused(tiny_checkpoints):
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(tiny_checkpoints[CAPTIONER], quantization="int8")
    with pytest.raises(ValueError, match="already quantized"):
        model.quantize("int8")


def test_saving_a_quantized_model_is_refused(tiny_checkpoints, tmp_path):
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(tiny_checkpoints[CAPTIONER])
    model.quantize("int8")
    with pytest.raises(ValueError, match="quantized"):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_int8_model_moved_to_another_dtype_keeps_its_int8_numbers_and_ids(demo_captions) -> None:
    """`model.to(dtype)` after quantizing moves the vision encoder; the int8 layers keep int8 weights, float32
    scales and bfloat16 kernel scales, and the demo captioner's held-out captions do not change."""
    pixels, ids, _ = demo_captions
    model = _load(CAPTIONER, DEMO_MODELS_DIR / CAPTIONER, "int8")
    with torch.no_grad():
        expected = model.generate(pixel_values=pixels, max_new_tokens=12)
        assert torch.equal(expected, ids)
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            model.to(dtype)
            head = model.text_decoder.cls.predictions.decoder
            assert (head.weight_int8.dtype, head.weight_scale.dtype, head._scale_bf16.dtype) == (
                torch.int8,
                torch.float32,
                torch.bfloat16,
            )
            assert head.bias is None or head.bias.dtype == torch.float32
            assert model.text_decoder.bert.encoder.layer[0].attention.self.query.bias.dtype == torch.float32
            assert model.vision_model.embeddings.patch_embedding.weight.dtype == dtype
            assert torch.equal(model.generate(pixel_values=pixels.to(dtype), max_new_tokens=12), expected)
