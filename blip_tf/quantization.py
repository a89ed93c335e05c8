"""Int8 weight-only decoding: the text decoder's linear layers hold int8 weights and a float32 scale per output
channel (`blip_core.modeling.quantization` says which layers and how). Twin of `blip_torch/quantization.py`.

A quantized `TFLinear` keeps `weight_int8` (in, out) int8 (Keras layout: torch's `weight_int8` transposed, the
same numbers, quantized by the same NumPy code) and `weight_scale` (out,) float32, and drops its float kernel.
The product mirrors PyTorch's weight-only kernel: activations rounded to bfloat16, the int8 weights widened,
float32 accumulation, times the scales rounded to bfloat16, the result rounded to bfloat16; the bias is added
as `Int8Linear` adds it and the output takes the input's dtype.

Keras 3's own `quantize("int8")` is not used: it quantizes `keras.layers.Dense`/`EinsumDense` only (these are
`TFLinear`s, which load checkpoints through `preload`), and it quantizes the activations dynamically too (int8 x
int8 products), so its numbers could not equal PyTorch's weight-only ones.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from blip_core.modeling.quantization import check_quantization, is_quantized_module, quantize_int8
from blip_core.weights import expected_params
from blip_core.weights.names import LINEAR
from blip_tf.layers import TFLinear

# As `blip_torch.quantization.INT8_KERNEL_MAX_ROWS`: above this many rows PyTorch multiplies by the widened
# bfloat16 weight (q * scale rounded to bfloat16); mirrored here so the twins round alike.
INT8_KERNEL_MAX_ROWS = 32


def int8_product(flat: tf.Tensor, weight_int8: tf.Tensor, scale_bf16: tf.Tensor) -> tf.Tensor:
    """flat (R, in) bfloat16 @ (weight_int8 (in, out) * scale (out,)): (R, out) bfloat16, float32 accumulation.

    bfloat16 x int8 products are exact in float32, so only the accumulation order can differ from PyTorch's.
    """
    rows = flat.shape[0]
    if rows is not None and rows > INT8_KERNEL_MAX_ROWS:  # PyTorch's path for many rows: one bfloat16 GEMM
        return tf.matmul(flat, tf.cast(weight_int8, tf.bfloat16) * scale_bf16[None, :])
    out = tf.matmul(tf.cast(flat, tf.float32), tf.cast(weight_int8, tf.float32))
    return tf.cast(out * tf.cast(scale_bf16, tf.float32), tf.bfloat16)


def int8_linear(layer: TFLinear, flat: tf.Tensor) -> tf.Tensor:
    """A quantized `TFLinear`'s product with its bias: flat (R, in) any float dtype -> (R, out), flat's dtype.
    Inference only: the int8 weights are not trainable (a tape still differentiates with respect to `flat`)."""
    out = int8_product(tf.cast(flat, tf.bfloat16), layer.weight_int8, layer.scale_bf16)
    if layer.bias is not None:
        if flat.dtype == tf.bfloat16:
            out = out + tf.cast(layer.bias, tf.bfloat16)
        else:
            out = tf.cast(out, tf.float32) + tf.cast(layer.bias, tf.float32)
    return tf.cast(out, flat.dtype)


def quantize_layer(layer: TFLinear, kernel: np.ndarray) -> None:
    """Give a built `TFLinear` int8 weights of `kernel` (in, out) and drop its float kernel (if it has one)."""
    q, scale = quantize_int8(kernel, axis=1)
    old = getattr(layer, "kernel", None)
    if old is not None:
        layer._untrack_variable(old)  # Keras has no public API to drop a built layer's variable
    locked = layer._tracker.locked
    layer._tracker.unlock()
    try:
        layer.weight_int8 = _constant_weight(layer, "weight_int8", q)
        layer.weight_scale = _constant_weight(layer, "weight_scale", scale)
        layer.scale_bf16 = _constant_weight(layer, "scale_bf16", scale.astype(tf.bfloat16.as_numpy_dtype))
    finally:
        if locked:
            layer._tracker.lock()
    layer.kernel = None
    layer.quantized = True


def _constant_weight(layer: TFLinear, name: str, value: np.ndarray) -> Any:
    dtype = tf.as_dtype(value.dtype).name
    return layer.add_weight(
        name=name, shape=value.shape, dtype=dtype, trainable=False, initializer=lambda shape, dtype=None: value
    )


def quantize_model(model: keras.Model, quantization: str | None) -> keras.Model:
    """Quantize the text decoder's `TFLinear` layers in place (the layers whose torch module path
    `is_quantized_module` selects); returns `model`.

    Raises:
        ValueError: an unknown mode, or a model without a text decoder (`check_quantization`).
    """
    class_name = type(model).__name__
    params = [spec for spec in expected_params(class_name.removeprefix("TF"), model.config) if spec.kind == LINEAR]
    mode = check_quantization(class_name, quantization, sorted({spec.name.split(".")[0] for spec in params}))
    if mode is None:
        return model
    model.build_model()
    for spec in params:
        path = spec.name.rpartition(".")[0]
        if spec.leaf != "weight" or not is_quantized_module(path):
            continue
        layer, _ = model.owner_of(spec.name, spec.kind)
        quantize_layer(layer, _float_kernel(model, path, layer))
    model.quantization = mode
    model._forget_compiled_functions()
    return model


def _float_kernel(model: keras.Model, path: str, layer: TFLinear) -> np.ndarray:
    """The layer's float32 kernel (in, out); a tied LM head's is the word-embedding matrix, transposed (the head
    then computes its logits through its own int8 weights, as PyTorch's tied `Linear` becomes an `Int8Linear`)."""
    if getattr(layer, "kernel", None) is not None:
        return keras.ops.convert_to_numpy(tf.cast(layer.kernel, tf.float32))
    owner, _ = model.owner_of(path + ".weight", LINEAR)
    predictions, _ = model.owner_of(path.rpartition(".")[0] + ".bias", "raw")
    if predictions.tied_embeddings is None or predictions.decoder is not owner:
        raise ValueError(f"{type(model).__name__}: the layer {path} has no kernel to quantize")
    embeddings = keras.ops.convert_to_numpy(tf.cast(predictions.tied_embeddings.embeddings, tf.float32))
    predictions.tied_embeddings = None
    return np.ascontiguousarray(embeddings.T)
