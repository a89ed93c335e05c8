"""The building blocks every Keras sub-network uses: initializers that skip the random draw while a
checkpoint is loading, the mixin for layers that create their own variables, `TFLinear`, attention over
additive masks, activations by config name and the additive mask itself. Imports nothing of the model
base class (`modeling_utils.py` imports this). Twin of `blip_torch/layers.py`.
"""

from __future__ import annotations

import contextvars
from typing import Any

import keras
import tensorflow as tf

from blip_core.config.model_constants import MASK_FILL_VALUE, activation_name


def gelu_erf(x: tf.Tensor) -> tf.Tensor:
    return tf.nn.gelu(x, approximate=False)


def gelu_tanh(x: tf.Tensor) -> tf.Tensor:
    return tf.nn.gelu(x, approximate=True)


# Named functions, not lambdas, as in `blip_torch.layers` (where a whole model must pickle).
_ACTIVATIONS = {
    "gelu_erf": gelu_erf,
    "gelu_tanh": gelu_tanh,
    "relu": tf.nn.relu,
    "tanh": tf.math.tanh,
    "silu": tf.nn.silu,
}
_LOADING = contextvars.ContextVar("blip_tf_loading", default=False)


def _uninitialized(shape: Any, dtype: Any = None) -> tf.Tensor:
    """Memory for a variable a checkpoint is about to fill: no random draw, no zero fill."""
    return tf.raw_ops.Empty(shape=shape, dtype=tf.as_dtype(dtype or "float32"), init=False)


def initializer(std: float) -> Any:
    """Random normal for models built from a config; nothing at all when a checkpoint will fill them."""
    return _uninitialized if _LOADING.get() else keras.initializers.RandomNormal(stddev=std)


class _OwnWeights:
    """Mixin for layers that create variables themselves; `own_weight` honours `preload`."""

    @property
    def preloaded(self) -> dict[str, Any]:
        return self.__dict__.setdefault("_preloaded", {})

    def own_weight(self, name: str, shape: tuple, default: Any) -> Any:
        return self.add_weight(name=name, shape=shape, initializer=self.preloaded.pop(name, default))


class TFLinear(_OwnWeights, keras.layers.Layer):
    """Twin of `Linear`: y = x @ kernel + bias, kernel in Keras layout (in, out).

    XLA and oneDNN already stream small products on both cores, so there is no split path.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.in_features, self.out_features, self.use_bias = in_features, out_features, bias
        self.init_std = 0.02
        self.quantized = False  # int8 weights instead of `kernel` (`blip_tf.quantization`)

    def build(self, input_shape: Any = None) -> None:
        self.kernel = self.own_weight("kernel", (self.in_features, self.out_features), initializer(self.init_std))
        self.bias = self.own_weight("bias", (self.out_features,), "zeros") if self.use_bias else None

    def call(self, input: tf.Tensor) -> tf.Tensor:
        if input.shape.num_elements() == 0:  # an empty batch never reaches a kernel (oneDNN's may mishandle 0 rows)
            return tf.zeros((*input.shape[:-1], self.out_features), input.dtype)
        shape = tf.shape(input)
        flat = tf.reshape(input, (-1, self.in_features))
        if self.quantized:
            from blip_tf.quantization import int8_linear  # that module imports this one

            out = int8_linear(self, flat)
        else:
            out = tf.matmul(flat, tf.cast(self.kernel, flat.dtype))
            if self.bias is not None:
                out = out + tf.cast(self.bias, out.dtype)
        return tf.reshape(out, tf.concat([shape[:-1], [self.out_features]], 0))


def attend(
    query: tf.Tensor,
    key: tf.Tensor,
    value: tf.Tensor,
    mask: tf.Tensor | None,
    dropout: float,
    output_attentions: bool,
    scale: float | None = None,
    group: int = 1,
    training: bool = False,
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Attention (B, H, T, D) -> (context, probabilities if asked); `mask` is additive.

    With `group` > 1, every `group` consecutive query rows share one row of keys/values (the beams
    of one image): those rows are folded into the query axis, so the keys/values are never copied.
    """
    if group > 1:
        batch, heads, length, size = tf.shape(query)[0], query.shape[1], tf.shape(query)[2], query.shape[3]
        folded = tf.transpose(tf.reshape(query, (-1, group, heads, length, size)), (0, 2, 1, 3, 4))
        folded = tf.reshape(folded, (-1, heads, group * length, size))  # (B, H, G*T, D)
        context, weights = attend(folded, key, value, mask, dropout, output_attentions, scale, training=training)
        context = tf.transpose(tf.reshape(context, (-1, heads, group, length, size)), (0, 2, 1, 3, 4))
        return tf.reshape(context, (batch, heads, length, size)), weights  # (B*G, H, T, D)
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    scores = tf.matmul(query, key, transpose_b=True) * tf.cast(scale, query.dtype)  # (B, H, T, S)
    weights = tf.nn.softmax(scores if mask is None else scores + tf.cast(mask, scores.dtype), axis=-1)
    if training and dropout > 0:
        weights = tf.nn.dropout(weights, rate=dropout)
    return tf.matmul(weights, value), (weights if output_attentions else None)


def get_activation(hidden_act: str):
    """The activation function a config names."""
    return _ACTIVATIONS[activation_name(hidden_act)]


def additive_mask(mask: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """A 0/1 keep-mask as the additive mask BLIP uses: 0 where kept, -10000 where masked."""
    return (1.0 - tf.cast(mask, dtype)) * MASK_FILL_VALUE
