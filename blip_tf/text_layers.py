"""The layers of the BERT text encoder/decoder in Keras 3: embeddings, self- and cross-attention, the
post-norm output blocks, the layer and the encoder stack, the pooler and the LM prediction head (whose
tied kernel is the word-embedding matrix itself). The models that assemble these layers are in
`text.py`. Twin of `blip_torch/text_layers.py`.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from blip_core.config.configuration import BlipTextConfig
from blip_tf.cache import TFKVCache
from blip_tf.layers import TFLinear, _OwnWeights, attend, get_activation, initializer


def _norm(config: BlipTextConfig, name: str) -> keras.layers.LayerNormalization:
    return keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name=name)


class TFBlipTextEmbeddings(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        std = config.initializer_range
        self.word_embeddings = keras.layers.Embedding(
            config.vocab_size, config.hidden_size, embeddings_initializer=initializer(std), name="word_embeddings"
        )
        self.position_embeddings = keras.layers.Embedding(
            config.max_position_embeddings,
            config.hidden_size,
            embeddings_initializer=initializer(std),
            name="position_embeddings",
        )
        self.LayerNorm = _norm(config, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)

    def build(self, input_shape: Any = None) -> None:
        self.word_embeddings.build(None)
        self.position_embeddings.build(None)
        self.LayerNorm.build((None, None, self.config.hidden_size))

    def call(
        self,
        input_ids: Any = None,
        position_ids: Any = None,
        inputs_embeds: Any = None,
        past_key_values_length: Any = 0,
        training: bool = False,
    ) -> tf.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        length = tf.shape(inputs_embeds)[1]
        if position_ids is None:
            position_ids = tf.range(past_key_values_length, past_key_values_length + length)[None]
        embeddings = inputs_embeds + tf.cast(self.position_embeddings(position_ids), inputs_embeds.dtype)
        return self.dropout(self.LayerNorm(embeddings), training=training)


class TFBlipTextSelfAttention(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, is_cross_attention: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.is_cross_attention = is_cross_attention
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        key_width = config.encoder_hidden_size if is_cross_attention else config.hidden_size
        self.query = TFLinear(config.hidden_size, config.hidden_size, name="query")
        self.key = TFLinear(key_width, config.hidden_size, name="key")
        self.value = TFLinear(key_width, config.hidden_size, name="value")
        self.dropout = config.attention_probs_dropout_prob

    def build(self, input_shape: Any = None) -> None:
        for layer in (self.query, self.key, self.value):
            layer.build()

    def _heads(self, states: tf.Tensor) -> tf.Tensor:
        batch, length = tf.shape(states)[0], tf.shape(states)[1]
        heads = tf.reshape(states, (batch, length, self.num_attention_heads, self.attention_head_size))
        return tf.transpose(heads, (0, 2, 1, 3))  # (B, H, T, D)

    def _keys_values(self, hidden_states: tf.Tensor, encoder_hidden_states: Any, cache: Any, layer: int) -> tuple:
        if not self.is_cross_attention:
            key, value = self._heads(self.key(hidden_states)), self._heads(self.value(hidden_states))
            return cache.update_self(layer, key, value) if cache is not None else (key, value)
        if cache is not None and cache.cross_entries[layer] is not None:
            return cache.cross_entries[layer]
        key, value = self._heads(self.key(encoder_hidden_states)), self._heads(self.value(encoder_hidden_states))
        if cache is not None:
            cache.cross_entries[layer] = (key, value)
        return key, value

    def call(
        self,
        hidden_states: tf.Tensor,
        attention_mask: Any = None,
        encoder_hidden_states: Any = None,
        cache: TFKVCache | None = None,
        layer: int = 0,
        output_attentions: bool = False,
        training: bool = False,
    ) -> tuple[tf.Tensor, Any]:
        query = self._heads(self.query(hidden_states))
        key, value = self._keys_values(hidden_states, encoder_hidden_states, cache, layer)
        group = _cross_group(query, key, cache if self.is_cross_attention else None)
        if group > 1 and output_attentions:
            key, value = tf.repeat(key, group, axis=0), tf.repeat(value, group, axis=0)
            attention_mask = None if attention_mask is None else tf.repeat(attention_mask, group, axis=0)
            group = 1
        context, weights = attend(
            query, key, value, attention_mask, self.dropout, output_attentions, group=group, training=training
        )
        heads, length, size = query.shape[1], tf.shape(query)[2], query.shape[3]
        context = tf.reshape(
            tf.transpose(context, (0, 2, 1, 3)), (tf.shape(context)[0], length, heads * size)
        )  # (B, T, H*D)
        return context, weights


def _cross_group(query: tf.Tensor, key: tf.Tensor, cache: TFKVCache | None) -> int:
    """Rows of the batch that share one row of keys (an image's beams). Forced difference: graphs may
    not know the batch size, so the cache says it when it expanded the rows."""
    if cache is not None and cache.cross_entries and cache.cross_group > 1:
        return cache.cross_group
    rows, key_rows = query.shape[0], key.shape[0]
    return rows // key_rows if rows is not None and key_rows else 1


class TFBlipTextSelfOutput(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.dense = TFLinear(config.hidden_size, config.hidden_size, name="dense")
        self.LayerNorm = _norm(config, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)

    def build(self, input_shape: Any = None) -> None:
        self.dense.build()
        self.LayerNorm.build((None, None, self.config.hidden_size))

    def call(self, hidden_states: tf.Tensor, input_tensor: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states), training=training) + input_tensor)


class TFBlipTextAttention(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, is_cross_attention: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.self = TFBlipTextSelfAttention(config, is_cross_attention, name="self")
        self.output_layer = TFBlipTextSelfOutput(
            config, name="output"
        )  # Keras reserves `output` (layouts.KERAS_ATTRIBUTES)

    def build(self, input_shape: Any = None) -> None:
        self.self.build()
        self.output_layer.build()

    def call(
        self,
        hidden_states: tf.Tensor,
        attention_mask: Any = None,
        encoder_hidden_states: Any = None,
        cache: Any = None,
        layer: int = 0,
        output_attentions: bool = False,
        training: bool = False,
    ) -> tuple:
        context, weights = self.self(
            hidden_states,
            attention_mask=attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            cache=cache,
            layer=layer,
            output_attentions=output_attentions,
            training=training,
        )
        return self.output_layer(context, input_tensor=hidden_states, training=training), weights


class TFBlipTextIntermediate(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = TFLinear(config.hidden_size, config.intermediate_size, name="dense")
        self.intermediate_act_fn = get_activation(config.hidden_act)

    def build(self, input_shape: Any = None) -> None:
        self.dense.build()

    def call(self, hidden_states: tf.Tensor) -> tf.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class TFBlipTextOutput(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.dense = TFLinear(config.intermediate_size, config.hidden_size, name="dense")
        self.LayerNorm = _norm(config, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)

    def build(self, input_shape: Any = None) -> None:
        self.dense.build()
        self.LayerNorm.build((None, None, self.config.hidden_size))

    def call(self, hidden_states: tf.Tensor, input_tensor: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states), training=training) + input_tensor)


class TFBlipTextLayer(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, layer_num: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layer_num = layer_num
        self.attention = TFBlipTextAttention(config, name="attention")
        self.crossattention = (
            TFBlipTextAttention(config, is_cross_attention=True, name="crossattention") if config.is_decoder else None
        )
        self.intermediate = TFBlipTextIntermediate(config, name="intermediate")
        self.output_layer = TFBlipTextOutput(
            config, name="output"
        )  # Keras reserves `output` (layouts.KERAS_ATTRIBUTES)

    def build(self, input_shape: Any = None) -> None:
        for layer in (self.attention, self.crossattention, self.intermediate, self.output_layer):
            if layer is not None:
                layer.build()

    def call(
        self,
        hidden_states: tf.Tensor,
        attention_mask: Any,
        encoder_hidden_states: Any,
        encoder_attention_mask: Any,
        cache: Any,
        output_attentions: bool,
        training: bool = False,
    ) -> tuple:
        hidden_states, self_weights = self.attention(
            hidden_states,
            attention_mask=attention_mask,
            cache=cache,
            layer=self.layer_num,
            output_attentions=output_attentions,
            training=training,
        )
        cross_weights = None
        if encoder_hidden_states is not None:
            if self.crossattention is None:
                raise ValueError(
                    "encoder_hidden_states given, but the text config has is_decoder=False (no cross-attention)"
                )
            hidden_states, cross_weights = self.crossattention(
                hidden_states,
                attention_mask=encoder_attention_mask,
                encoder_hidden_states=encoder_hidden_states,
                cache=cache,
                layer=self.layer_num,
                output_attentions=output_attentions,
                training=training,
            )
        hidden_states = self.output_layer(
            self.intermediate(hidden_states), input_tensor=hidden_states, training=training
        )
        return hidden_states, self_weights, cross_weights


class TFBlipTextEncoder(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layer = [TFBlipTextLayer(config, i, name=f"layer_._{i}") for i in range(config.num_hidden_layers)]

    def build(self, input_shape: Any = None) -> None:
        for layer in self.layer:
            layer.build()

    def call(
        self,
        hidden_states: tf.Tensor,
        attention_mask: Any,
        encoder_hidden_states: Any,
        encoder_attention_mask: Any,
        cache: Any,
        output_attentions: bool,
        output_hidden_states: bool,
        training: bool = False,
    ) -> tuple:
        all_hidden = (hidden_states,) if output_hidden_states else None
        all_self = () if output_attentions else None
        all_cross = () if output_attentions and encoder_hidden_states is not None else None
        for layer in self.layer:
            hidden_states, self_weights, cross_weights = layer(
                hidden_states,
                attention_mask=attention_mask,
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
                cache=cache,
                output_attentions=output_attentions,
                training=training,
            )
            if output_hidden_states:
                all_hidden += (hidden_states,)
            if output_attentions:
                all_self += (self_weights,)
                if all_cross is not None:
                    all_cross += (cross_weights,)
        return hidden_states, all_hidden, all_self, all_cross


class TFBlipTextPooler(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = TFLinear(config.hidden_size, config.hidden_size, name="dense")

    def build(self, input_shape: Any = None) -> None:
        self.dense.build()

    def call(self, hidden_states: tf.Tensor) -> tf.Tensor:
        return tf.math.tanh(self.dense(hidden_states[:, 0]))


class TFBlipTextPredictionHeadTransform(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.dense = TFLinear(config.hidden_size, config.hidden_size, name="dense")
        self.transform_act_fn = get_activation(config.hidden_act)
        self.LayerNorm = _norm(config, "LayerNorm")

    def build(self, input_shape: Any = None) -> None:
        self.dense.build()
        self.LayerNorm.build((None, None, self.config.hidden_size))

    def call(self, hidden_states: tf.Tensor) -> tf.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class TFBlipTextLMPredictionHead(_OwnWeights, keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.transform = TFBlipTextPredictionHeadTransform(config, name="transform")
        self.decoder = TFLinear(config.hidden_size, config.vocab_size, bias=False, name="decoder")
        self.tied_embeddings: keras.layers.Embedding | None = None  # set by tie_weights; no decoder kernel then

    def build(self, input_shape: Any = None) -> None:
        self.bias = self.own_weight("bias", (self.config.vocab_size,), "zeros")
        self.transform.build()
        if self.tied_embeddings is None or self.decoder.use_bias:
            self.decoder.build()

    def call(self, hidden_states: tf.Tensor) -> tf.Tensor:
        hidden_states = self.transform(hidden_states)
        if self.tied_embeddings is not None:  # tied: logits against the word-embedding matrix itself
            flat = tf.reshape(hidden_states, (-1, hidden_states.shape[-1]))
            logits = tf.matmul(flat, tf.cast(self.tied_embeddings.embeddings, flat.dtype), transpose_b=True)
            logits = tf.reshape(logits, tf.concat([tf.shape(hidden_states)[:-1], [self.config.vocab_size]], 0))
        else:
            logits = self.decoder(hidden_states)
        if not self.decoder.use_bias:  # a tied bias: cls.predictions.bias is the decoder's bias
            logits = logits + tf.cast(self.bias, logits.dtype)
        return logits


class TFBlipTextOnlyMLMHead(keras.layers.Layer):
    def __init__(self, config: BlipTextConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.predictions = TFBlipTextLMPredictionHead(config, name="predictions")

    def build(self, input_shape: Any = None) -> None:
        self.predictions.build()

    def call(self, sequence_output: tf.Tensor) -> tf.Tensor:
        return self.predictions(sequence_output)
