"""The BERT text encoder/decoder with cross-attention (`TFBlipTextModel`, `TFBlipTextLMHeadModel`).

Twin of `blip_torch/text.py`; the layers are in `text_layers.py`. The tied LM
head multiplies by the word-embedding matrix itself (no second copy); an untied
one (a file whose decoder differs) gets its own kernel.
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
from blip_core.modeling.moved_names import forward_moved_names
from blip_core.modeling.outputs import BaseModelOutputWithPoolingAndCrossAttentions, CausalLMOutputWithCrossAttentions
from blip_tf.cache import TFKVCache
from blip_tf.input_checks import check_inputs, check_labels
from blip_tf.layers import TFLinear, additive_mask
from blip_tf.modeling_utils import TFBlipPreTrainedModel, as_tensor
from blip_tf.text_layers import TFBlipTextEmbeddings, TFBlipTextEncoder, TFBlipTextOnlyMLMHead, TFBlipTextPooler


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


# Names defined here before this file was split: old imports and whole-model pickles keep working.
__getattr__ = forward_moved_names(
    __name__,
    {
        "TFBlipTextAttention": "blip_tf.text_layers",
        "TFBlipTextIntermediate": "blip_tf.text_layers",
        "TFBlipTextLMPredictionHead": "blip_tf.text_layers",
        "TFBlipTextLayer": "blip_tf.text_layers",
        "TFBlipTextOutput": "blip_tf.text_layers",
        "TFBlipTextPredictionHeadTransform": "blip_tf.text_layers",
        "TFBlipTextSelfAttention": "blip_tf.text_layers",
        "TFBlipTextSelfOutput": "blip_tf.text_layers",
    },
)
