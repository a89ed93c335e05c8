"""The BERT text encoder/decoder with cross-attention (`TFBlipTextModel`, `TFBlipTextLMHeadModel`).

Twin of `blip_torch/text.py`. The tied LM head multiplies by the word-embedding
matrix itself (no second copy); an untied one (a file whose decoder differs)
gets its own kernel.
"""

from __future__ import annotations

import functools
from typing import Any

import keras
import tensorflow as tf

from blip_core.config.configuration import BlipTextConfig
from blip_core.config.model_constants import IGNORE_INDEX
from blip_core.modeling.empty_batch import cache_entry_shapes, is_empty
from blip_core.modeling.empty_batch import text_output as empty_text_output
from blip_core.modeling.limits import check_cross_attention, check_text_shape
from blip_core.modeling.outputs import BaseModelOutputWithPoolingAndCrossAttentions, CausalLMOutputWithCrossAttentions
from blip_tf.cache import TFKVCache
from blip_tf.input_checks import check_inputs, check_labels
from blip_tf.modeling_utils import (
    TFBlipPreTrainedModel,
    TFLinear,
    _OwnWeights,
    additive_mask,
    as_tensor,
    attend,
    get_activation,
    initializer,
)


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


def extended_attention_mask(
    attention_mask: tf.Tensor, length: Any, past: Any, is_decoder: bool, dtype: Any
) -> tf.Tensor:
    """BLIP's additive self-attention mask (B, 1, T, S): padding, and causality for decoders.

    S is the mask's own length: past + T, or a generation cache's whole capacity.
    """
    attention_mask = tf.cast(attention_mask, dtype)
    if attention_mask.shape.rank == 3:
        keep = attention_mask[:, None]
    elif is_decoder:
        keys = tf.range(tf.shape(attention_mask)[1])
        queries = tf.cast(past, tf.int32) + tf.range(length)
        causal = tf.cast(keys[None, :] <= queries[:, None], dtype)  # (T, S)
        keep = causal[None, None] * attention_mask[:, None, None, :]
    else:
        keep = attention_mask[:, None, None, :]
    return additive_mask(keep, dtype)


class TFBlipTextModel(TFBlipPreTrainedModel):
    """The BLIP text transformer in Keras 3; twin of `blip_torch.BlipTextModel`.

    >>> from blip_core import BlipTextConfig
    >>> model = TFBlipTextModel(BlipTextConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...                                        num_attention_heads=2, intermediate_size=20))
    >>> model(tf.constant([[1, 5, 7]])).pooler_output.shape
    TensorShape([1, 16])
    """

    config_class = BlipTextConfig
    main_input_name = "input_ids"

    def __init__(self, config: BlipTextConfig, add_pooling_layer: bool = True, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.embeddings = TFBlipTextEmbeddings(config, name="embeddings")
        self.encoder = TFBlipTextEncoder(config, name="encoder")
        self.pooler = TFBlipTextPooler(config, name="pooler") if add_pooling_layer else None
        self.post_init()

    def build(self, input_shape: Any = None) -> None:
        self.embeddings.build()
        self.encoder.build()
        if self.pooler is not None:
            self.pooler.build()

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: keras.layers.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def call(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        position_ids: Any = None,
        head_mask: Any = None,
        inputs_embeds: Any = None,
        encoder_embeds: Any = None,
        encoder_hidden_states: Any = None,
        encoder_attention_mask: Any = None,
        past_key_values: TFKVCache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        is_decoder: bool = False,
        training: bool = False,
    ) -> BaseModelOutputWithPoolingAndCrossAttentions | tuple:
        if head_mask is not None:
            raise ValueError("head_mask is not supported")
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        use_cache = (self.config.use_cache if use_cache is None else use_cache) and is_decoder
        if (input_ids is None) == (inputs_embeds is None and encoder_embeds is None):
            raise ValueError("pass exactly one of input_ids, inputs_embeds or encoder_embeds")
        input_ids, position_ids = as_tensor(input_ids), as_tensor(position_ids)
        cache = (
            past_key_values
            if past_key_values is not None
            else (TFKVCache(self.config.num_hidden_layers) if use_cache else None)
        )
        past = cache.length if cache is not None else 0
        first = (
            input_ids
            if input_ids is not None
            else as_tensor(inputs_embeds if inputs_embeds is not None else encoder_embeds)
        )
        batch, length = check_text_shape(tuple(first.shape), input_ids is not None)  # static, None when unknown
        check_inputs(input_ids, position_ids, batch, length, past, self.config, encoder_embeds is None)
        check_cross_attention(encoder_hidden_states is not None, self.config.is_decoder)  # (the layers check too)
        if is_empty(batch):
            output = self._empty_output(
                length, past, encoder_hidden_states, cache, use_cache, output_attentions, output_hidden_states
            )
            return output if return_dict else output.to_tuple()
        length = length if length is not None else tf.shape(first)[1]  # static when known
        if encoder_embeds is not None:
            hidden_states = as_tensor(encoder_embeds)
        else:
            hidden_states = self.embeddings(
                input_ids,
                position_ids=position_ids,
                inputs_embeds=as_tensor(inputs_embeds),
                past_key_values_length=past,
                training=training,
            )
        if attention_mask is None and (not is_decoder or length == 1):
            mask = None  # nothing to hide: no padding, and one query position needs no causal mask
        else:
            if attention_mask is None:
                attention_mask = tf.ones((tf.shape(hidden_states)[0], past + length), hidden_states.dtype)
            mask = extended_attention_mask(as_tensor(attention_mask), length, past, is_decoder, hidden_states.dtype)
        encoder_hidden_states = as_tensor(encoder_hidden_states)
        cross_mask = None
        if encoder_hidden_states is not None and encoder_attention_mask is not None:
            cross_mask = additive_mask(as_tensor(encoder_attention_mask)[:, None, None, :], hidden_states.dtype)
        sequence_output, all_hidden, all_self, all_cross = self.encoder(
            hidden_states,
            attention_mask=mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=cross_mask,
            cache=cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            training=training,
        )
        if cache is not None:
            cache.advance(length)
        pooled = self.pooler(sequence_output) if self.pooler is not None else None
        output = BaseModelOutputWithPoolingAndCrossAttentions(
            sequence_output, pooled, all_hidden, cache if use_cache else None, all_self, all_cross
        )
        return output if return_dict else output.to_tuple()

    def _empty_output(
        self,
        length: int,
        past: int,
        encoder_hidden_states: Any,
        cache: TFKVCache | None,
        use_cache: bool,
        output_attentions: bool,
        output_hidden_states: bool,
    ) -> BaseModelOutputWithPoolingAndCrossAttentions:
        """0 texts: outputs (and cache entries) of the right shapes, without running a kernel."""
        encoder_length = None if encoder_hidden_states is None else encoder_hidden_states.shape[1]
        zeros = functools.partial(tf.zeros, dtype=self.compute_dtype)
        if cache is not None:
            self_shape, cross_shape = cache_entry_shapes(self.config, length, encoder_length)
            for layer in range(self.config.num_hidden_layers):
                cache.update_self(layer, zeros(self_shape), zeros(self_shape))
                if cross_shape is not None and cache.cross_entries[layer] is None:
                    cache.cross_entries[layer] = (zeros(cross_shape), zeros(cross_shape))
            cache.advance(length)
        return empty_text_output(
            self.config,
            length,
            past,
            encoder_length,
            self.pooler is not None,
            output_attentions,
            output_hidden_states,
            cache if use_cache else None,
            zeros,
        )


def lm_loss(logits: tf.Tensor, labels: tf.Tensor, label_smoothing: float, reduction: str) -> tf.Tensor:
    """Next-token cross-entropy: logits[:, :-1] against labels[:, 1:], -100 ignored."""
    log_probs = tf.nn.log_softmax(tf.cast(logits[:, :-1], tf.float32), axis=-1)
    targets = tf.cast(labels[:, 1:], tf.int32)
    keep = tf.cast(targets != IGNORE_INDEX, tf.float32)
    picked = tf.gather(log_probs, tf.where(targets == IGNORE_INDEX, 0, targets), batch_dims=2)
    per_token = -picked
    if label_smoothing:
        per_token = (1.0 - label_smoothing) * per_token - label_smoothing * tf.reduce_mean(log_probs, axis=-1)
    per_token = per_token * keep  # (B, T-1)
    if reduction == "none":
        return tf.reduce_sum(per_token, axis=1)
    return tf.reduce_sum(per_token) / tf.reduce_sum(keep)


class TFBlipTextLMHeadModel(TFBlipPreTrainedModel):
    """The BLIP text decoder with its LM head in Keras 3; twin of `blip_torch.BlipTextLMHeadModel`.

    >>> from blip_core import BlipTextConfig
    >>> model = TFBlipTextLMHeadModel(BlipTextConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...                                              num_attention_heads=2, intermediate_size=20))
    >>> model(tf.constant([[1, 5, 7]])).logits.shape
    TensorShape([1, 3, 50])
    """

    config_class = BlipTextConfig
    main_input_name = "input_ids"

    def __init__(self, config: BlipTextConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.bert = TFBlipTextModel(config, add_pooling_layer=False, name="bert")
        self.cls = TFBlipTextOnlyMLMHead(config, name="cls")
        self.label_smoothing = config.label_smoothing
        self.post_init()
        self.tie_weights()

    def build(self, input_shape: Any = None) -> None:
        self.bert.build()
        self.cls.build()

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.bert.get_input_embeddings()

    def set_input_embeddings(self, value: keras.layers.Embedding) -> None:
        self.bert.set_input_embeddings(value)

    def get_output_embeddings(self) -> TFLinear:
        return self.cls.predictions.decoder

    def tie_weights(self, untied: frozenset[str] = frozenset()) -> None:
        predictions = self.cls.predictions
        predictions.decoder.use_bias = "cls.predictions.decoder.bias" in untied
        tie = self.config.tie_word_embeddings and "cls.predictions.decoder.weight" not in untied
        predictions.tied_embeddings = self.bert.embeddings.word_embeddings if tie else None

    def untied_names(self) -> frozenset[str]:
        predictions = self.cls.predictions
        names = set() if predictions.tied_embeddings is not None else {"cls.predictions.decoder.weight"}
        return frozenset(names | ({"cls.predictions.decoder.bias"} if predictions.decoder.use_bias else set()))

    def call(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        position_ids: Any = None,
        head_mask: Any = None,
        inputs_embeds: Any = None,
        encoder_hidden_states: Any = None,
        encoder_attention_mask: Any = None,
        labels: Any = None,
        past_key_values: TFKVCache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        return_logits: bool = False,
        is_decoder: bool = True,
        reduction: str = "mean",
        training: bool = False,
    ) -> CausalLMOutputWithCrossAttentions | tuple | tf.Tensor:
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        if labels is not None:
            labels = as_tensor(labels)
            check_labels(labels, self.config, as_tensor(input_ids if input_ids is not None else inputs_embeds))
            use_cache = False
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            head_mask=head_mask,
            inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            is_decoder=is_decoder,
            training=training,
        )
        sequence_output = outputs.last_hidden_state
        if is_empty(sequence_output.shape[0]):  # 0 texts: logits of the right shape, no kernel
            logits = tf.zeros((*sequence_output.shape[:2], self.config.vocab_size), sequence_output.dtype)
        else:
            logits = self.cls(sequence_output)
        if return_logits:
            return logits[:, :-1]
        loss = lm_loss(logits, labels, self.label_smoothing, reduction) if labels is not None else None
        output = CausalLMOutputWithCrossAttentions(
            loss, logits, outputs.past_key_values, outputs.hidden_states, outputs.attentions, outputs.cross_attentions
        )
        return output if return_dict else output.to_tuple()
