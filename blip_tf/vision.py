"""The ViT image encoder (`TFBlipVisionModel`), twin of `blip_torch/vision.py`.

Differences forced by the framework: pixels are transposed to channels-last
for Keras' Conv2D, and `interpolate_pos_encoding` (which the `transformers`
TF port lacks) uses `blip_core`'s bicubic matrix, exactly as the PyTorch twin.
"""

from __future__ import annotations

import functools
from typing import Any

import keras
import tensorflow as tf

from blip_core.config.configuration import BlipVisionConfig
from blip_core.config.model_constants import num_positions, patch_grid
from blip_core.modeling.empty_batch import is_empty
from blip_core.modeling.empty_batch import vision_output as empty_vision_output
from blip_core.modeling.interpolation import bicubic_matrix
from blip_core.modeling.limits import check_pixel_shape, vision_tokens
from blip_core.modeling.outputs import BaseModelOutputWithPooling
from blip_tf.layers import TFLinear, _OwnWeights, attend, get_activation, initializer
from blip_tf.modeling_utils import TFBlipPreTrainedModel, as_tensor


class TFBlipVisionEmbeddings(_OwnWeights, keras.layers.Layer):
    def __init__(self, config: BlipVisionConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.patch_size = config.patch_size
        self.init_std = config.initializer_range
        self.patch_embedding = keras.layers.Conv2D(
            config.hidden_size,
            config.patch_size,
            strides=config.patch_size,
            padding="valid",
            data_format="channels_last",
            kernel_initializer=initializer(config.initializer_range),
            name="patch_embedding",
        )

    def build(self, input_shape: Any = None) -> None:
        width, std = self.config.hidden_size, self.init_std
        self.class_embedding = self.own_weight("class_embedding", (1, 1, width), initializer(std))
        positions = num_positions(self.config.image_size, self.config.patch_size)
        self.position_embedding = self.own_weight("position_embedding", (1, positions, width), initializer(std))
        self.patch_embedding.build((None, None, None, 3))

    def interpolate_pos_encoding(self, height: int, width: int) -> tf.Tensor:
        """The position table resized bicubically to a (height, width) image's patch grid."""
        rows, cols = patch_grid(height, width, self.patch_size)
        table = tf.convert_to_tensor(self.position_embedding)
        side = int(round((table.shape[1] - 1) ** 0.5))
        if (rows, cols) == (side, side):
            return table
        grid = tf.reshape(table[0, 1:], (side, side, -1))  # (S, S, D)
        row_matrix = tf.constant(bicubic_matrix(side, rows), dtype=grid.dtype)
        col_matrix = tf.constant(bicubic_matrix(side, cols), dtype=grid.dtype)
        resized = tf.einsum("rh,hwd,cw->rcd", row_matrix, grid, col_matrix)  # (R, C, D)
        return tf.concat([table[:, :1], tf.reshape(resized, (1, rows * cols, -1))], axis=1)

    def call(self, pixel_values: tf.Tensor, interpolate_pos_encoding: bool = False) -> tf.Tensor:
        batch, _, height, width = pixel_values.shape
        vision_tokens(self.config, height, width, interpolate_pos_encoding)  # the image fits the position table
        channels_last = tf.transpose(
            pixel_values, (0, 2, 3, 1)
        )  # (B, C, H, W) -> (B, H, W, C): Keras convolves channels-last
        patches = self._patches(tf.cast(channels_last, self.compute_dtype))  # (B, R, C, D)
        patches = tf.reshape(patches, (-1, patches.shape[1] * patches.shape[2], patches.shape[-1]))  # (B, R*C, D)
        class_token = tf.cast(tf.tile(self.class_embedding, (tf.shape(patches)[0], 1, 1)), patches.dtype)
        tokens = tf.concat([class_token, patches], axis=1)
        if interpolate_pos_encoding:
            positions = self.interpolate_pos_encoding(height, width)
        else:
            positions = tf.convert_to_tensor(self.position_embedding)
        return tokens + tf.cast(positions, tokens.dtype)

    def _patches(self, channels_last: tf.Tensor) -> tf.Tensor:
        """The patch convolution. Forced difference: oneDNN's Conv2D (AVX-512 CPUs) returns a wrong shape for
        0 images, so a graph whose batch size is unknown runs it only on a non-empty batch."""
        if channels_last.shape[0] is not None:  # known (eager): the model never passes 0 images
            return self.patch_embedding(channels_last)
        _, height, width, _ = channels_last.shape
        empty = (0, height // self.patch_size, width // self.patch_size, self.config.hidden_size)
        return tf.cond(
            tf.shape(channels_last)[0] > 0,
            lambda: self.patch_embedding(channels_last),
            lambda: tf.zeros(empty, channels_last.dtype),
        )


class TFBlipAttention(keras.layers.Layer):
    def __init__(self, config: BlipVisionConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scale = self.head_dim**-0.5
        self.dropout = config.attention_dropout
        self.qkv = TFLinear(config.hidden_size, 3 * config.hidden_size, name="qkv")
        self.projection = TFLinear(config.hidden_size, config.hidden_size, name="projection")

    def build(self, input_shape: Any = None) -> None:
        self.qkv.build()
        self.projection.build()

    def call(
        self, hidden_states: tf.Tensor, output_attentions: bool = False, training: bool = False
    ) -> tuple[tf.Tensor, Any]:
        batch, length, width = tf.shape(hidden_states)[0], tf.shape(hidden_states)[1], hidden_states.shape[-1]
        qkv = tf.reshape(self.qkv(hidden_states), (batch, length, 3, self.num_heads, self.head_dim))
        query, key, value = tf.unstack(tf.transpose(qkv, (2, 0, 3, 1, 4)))  # 3 x (B, H, T, D)
        context, weights = attend(
            query, key, value, None, self.dropout, output_attentions, self.scale, training=training
        )
        context = tf.reshape(tf.transpose(context, (0, 2, 1, 3)), (batch, length, width))  # (B, T, H*D)
        return self.projection(context), weights


class TFBlipMLP(keras.layers.Layer):
    def __init__(self, config: BlipVisionConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation_fn = get_activation(config.hidden_act)
        self.fc1 = TFLinear(config.hidden_size, config.intermediate_size, name="fc1")
        self.fc2 = TFLinear(config.intermediate_size, config.hidden_size, name="fc2")

    def build(self, input_shape: Any = None) -> None:
        self.fc1.build()
        self.fc2.build()

    def call(self, hidden_states: tf.Tensor) -> tf.Tensor:
        return self.fc2(self.activation_fn(self.fc1(hidden_states)))


class TFBlipEncoderLayer(keras.layers.Layer):
    def __init__(self, config: BlipVisionConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.self_attn = TFBlipAttention(config, name="self_attn")
        self.layer_norm1 = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="layer_norm1")
        self.mlp = TFBlipMLP(config, name="mlp")
        self.layer_norm2 = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="layer_norm2")

    def build(self, input_shape: Any = None) -> None:
        self.self_attn.build()
        self.layer_norm1.build((None, None, self.config.hidden_size))
        self.mlp.build()
        self.layer_norm2.build((None, None, self.config.hidden_size))

    def call(
        self, hidden_states: tf.Tensor, output_attentions: bool = False, training: bool = False
    ) -> tuple[tf.Tensor, Any]:
        attended, weights = self.self_attn(
            self.layer_norm1(hidden_states), output_attentions=output_attentions, training=training
        )
        hidden_states = hidden_states + attended
        hidden_states = hidden_states + self.mlp(self.layer_norm2(hidden_states))
        return hidden_states, weights


class TFBlipEncoder(keras.layers.Layer):
    def __init__(self, config: BlipVisionConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layers = [TFBlipEncoderLayer(config, name=f"layers_._{i}") for i in range(config.num_hidden_layers)]

    def build(self, input_shape: Any = None) -> None:
        for layer in self.layers:
            layer.build()

    def call(
        self,
        hidden_states: tf.Tensor,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        training: bool = False,
    ) -> tuple[tf.Tensor, tuple | None, tuple | None]:
        all_hidden = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            hidden_states, weights = layer(hidden_states, output_attentions=output_attentions, training=training)
            if output_hidden_states:
                all_hidden += (hidden_states,)
            if output_attentions:
                all_attentions += (weights,)
        return hidden_states, all_hidden, all_attentions


class TFBlipVisionModel(TFBlipPreTrainedModel):
    """The BLIP image encoder in Keras 3; twin of `blip_torch.BlipVisionModel` (channels-first pixels, as there).

    >>> from blip_core import BlipVisionConfig
    >>> model = TFBlipVisionModel(BlipVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
    ...                                            intermediate_size=40, image_size=32, patch_size=16))
    >>> model(tf.zeros((1, 3, 32, 32))).last_hidden_state.shape
    TensorShape([1, 5, 32])
    """

    config_class = BlipVisionConfig

    def __init__(self, config: BlipVisionConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.embeddings = TFBlipVisionEmbeddings(config, name="embeddings")
        self.encoder = TFBlipEncoder(config, name="encoder")
        self.post_layernorm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="post_layernorm")
        self.post_init()

    def build(self, input_shape: Any = None) -> None:
        self.embeddings.build()
        self.encoder.build()
        self.post_layernorm.build((None, None, self.config.hidden_size))

    def get_input_embeddings(self) -> keras.layers.Layer:
        return self.embeddings

    def call(
        self,
        pixel_values: Any = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
        training: bool = False,
    ) -> BaseModelOutputWithPooling | tuple:
        if pixel_values is None:
            raise ValueError("TFBlipVisionModel needs pixel_values of shape (batch, 3, height, width)")
        pixel_values = as_tensor(pixel_values)
        check_pixel_shape(tuple(pixel_values.shape))
        height, width = pixel_values.shape[2:]
        if height is not None and width is not None:  # here, not only in the embeddings: before a Keras sub-layer
            vision_tokens(self.config, height, width, interpolate_pos_encoding)  # would wrap the error
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        if is_empty(pixel_values.shape[0]):  # 0 images: outputs of the right shapes, no kernel
            zeros = functools.partial(tf.zeros, dtype=self.compute_dtype)
            output = empty_vision_output(
                self.config,
                tuple(pixel_values.shape),
                interpolate_pos_encoding,
                output_attentions,
                output_hidden_states,
                zeros,
            )
            return output if return_dict else output.to_tuple()
        hidden_states = self.embeddings(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        hidden_states, all_hidden, all_attentions = self.encoder(
            hidden_states,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            training=training,
        )
        last_hidden_state = self.post_layernorm(hidden_states)
        pooled_output = self.post_layernorm(last_hidden_state[:, 0, :])  # normalised twice, as in transformers
        output = BaseModelOutputWithPooling(last_hidden_state, pooled_output, all_hidden, all_attentions)
        return output if return_dict else output.to_tuple()
