"""The task models in Keras 3: contrastive, captioning, retrieval, question answering.

Twin of `blip_torch/models.py`, same semantics (REFERENCE §0 included). Keras
additions: `call` accepts a dict of processor outputs as its first argument,
and `model_loss` is what `fit` trains on (`blip_tf/keras_model.py`), so
`model.compile(optimizer)` then `model.fit(dataset)` trains the model.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from blip_core.config.configuration import BlipConfig, check_vqa_widths
from blip_core.config.model_constants import CLS_TOKEN_ID, IGNORE_INDEX
from blip_core.generation.options import special_tokens
from blip_core.generation.prompts import prompt_rows
from blip_core.modeling.limits import check_answers, check_loss_rows, check_text_length
from blip_core.modeling.limits import check_pairing as _check_pairing
from blip_core.modeling.outputs import (
    BlipForConditionalGenerationModelOutput,
    BlipImageTextMatchingModelOutput,
    BlipOutput,
    BlipTextVisionModelOutput,
)
from blip_tf.generation import TFGenerationMixin, empty_output
from blip_tf.generation import generate as decode
from blip_tf.modeling_utils import TFBlipPreTrainedModel, TFLinear, as_tensor, inference_function, pixel_signature
from blip_tf.text import TFBlipTextLMHeadModel, TFBlipTextModel
from blip_tf.vision import TFBlipVisionModel


def _prefixed(untied: frozenset[str], prefix: str) -> frozenset[str]:
    return frozenset(name[len(prefix) :] for name in untied if name.startswith(prefix))


def _image_features(model: TFBlipPreTrainedModel, pixel_values: Any, interpolate_pos_encoding: bool, **kwargs: Any):
    if pixel_values is None:
        raise ValueError(f"{type(model).__name__} needs pixel_values of shape (batch, 3, height, width)")
    return model.vision_model(
        pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, return_dict=True, **kwargs
    )


def _flags(config: BlipConfig, output_attentions: Any, output_hidden_states: Any, return_dict: Any) -> tuple:
    return (
        config.output_attentions if output_attentions is None else output_attentions,
        config.output_hidden_states if output_hidden_states is None else output_hidden_states,
        config.use_return_dict if return_dict is None else return_dict,
    )


def contrastive_loss(logits: tf.Tensor) -> tf.Tensor:
    targets = tf.range(tf.shape(logits)[0])
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits))


def blip_loss(similarity: tf.Tensor) -> tf.Tensor:
    """CLIP's symmetric loss: text->image and image->text cross-entropy, averaged."""
    return (contrastive_loss(similarity) + contrastive_loss(tf.transpose(similarity))) / 2.0


def _l2_normalize(x: tf.Tensor) -> tf.Tensor:
    return x / tf.norm(x, ord=2, axis=-1, keepdims=True)


class TFBlipModel(TFBlipPreTrainedModel):
    """Contrastive image and text embeddings in Keras 3; twin of `blip_torch.BlipModel`."""

    config_class = BlipConfig

    def __init__(self, config: BlipConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.text_model = TFBlipTextModel(config.text_config, name="text_model")
        self.vision_model = TFBlipVisionModel(config.vision_config, name="vision_model")
        self.visual_projection = TFLinear(
            config.vision_config.hidden_size, config.projection_dim, bias=False, name="visual_projection"
        )
        self.text_projection = TFLinear(
            config.text_config.hidden_size, config.projection_dim, bias=False, name="text_projection"
        )
        self.post_init()

    def build(self, input_shape: Any = None) -> None:
        value = keras.initializers.Constant(float(self.config.logit_scale_init_value))
        self.logit_scale = self.own_weight("logit_scale", (), value)
        for layer in (self.text_model, self.vision_model, self.visual_projection, self.text_projection):
            layer.build()

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.text_model.get_input_embeddings()

    def model_loss(self, x: Any, y: Any, y_pred: BlipOutput, training: bool) -> tf.Tensor:
        """Keras `fit` trains on the contrastive loss, as `transformers`' TF train step asks for return_loss."""
        return y_pred.loss if y_pred.loss is not None else blip_loss(y_pred.logits_per_text)

    def set_input_embeddings(self, value: keras.layers.Embedding) -> None:
        self.text_model.set_input_embeddings(value)

    def get_text_features(
        self, input_ids: Any, attention_mask: Any = None, position_ids: Any = None, return_dict: Any = None
    ) -> tf.Tensor:
        """Unnormalised text embeddings: `text_projection` of the pooled text output."""
        text_outputs = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, return_dict=True
        )
        return self.text_projection(text_outputs.pooler_output)

    def get_image_features(
        self, pixel_values: Any, return_dict: Any = None, interpolate_pos_encoding: bool = False
    ) -> tf.Tensor:
        """Unnormalised image embeddings: `visual_projection` of the pooled vision output."""
        vision_outputs = _image_features(self, pixel_values, interpolate_pos_encoding)
        return self.visual_projection(vision_outputs.pooler_output)

    def get_multimodal_features(
        self, input_ids: Any, pixel_values: Any, attention_mask: Any = None, interpolate_pos_encoding: bool = False
    ) -> tf.Tensor:
        """Text attending to the image, projected: `text_projection` of the pooled multimodal output."""
        image_embeds = _image_features(self, pixel_values, interpolate_pos_encoding).last_hidden_state
        text_outputs = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds, return_dict=True
        )
        return self.text_projection(text_outputs.pooler_output)

    def call(
        self,
        input_ids: Any = None,
        pixel_values: Any = None,
        attention_mask: Any = None,
        position_ids: Any = None,
        return_loss: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
        training: bool = False,
    ) -> BlipOutput | tuple:
        if isinstance(input_ids, dict):  # Keras fit passes the batch dict as the first argument
            return self.call(**input_ids, training=training)
        output_attentions, output_hidden_states, return_dict = _flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        if input_ids is None:
            raise ValueError("TFBlipModel needs input_ids and pixel_values")
        if return_loss:  # a contrastive loss needs pairs: none when either side is empty
            rows = (None if pixel_values is None else as_tensor(pixel_values).shape[0], as_tensor(input_ids).shape[0])
            check_loss_rows("the contrastive loss (return_loss=True)", *rows)
        vision_outputs = _image_features(
            self,
            pixel_values,
            interpolate_pos_encoding,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            training=training,
        )
        text_outputs = self.text_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            training=training,
        )
        image_embeds = _l2_normalize(self.visual_projection(vision_outputs.pooler_output))
        text_embeds = _l2_normalize(self.text_projection(text_outputs.pooler_output))
        logits_per_text = tf.matmul(text_embeds, image_embeds, transpose_b=True) * tf.exp(
            tf.cast(self.logit_scale, text_embeds.dtype)
        )
        logits_per_image = tf.transpose(logits_per_text)
        loss = blip_loss(logits_per_text) if return_loss else None
        output = BlipOutput(
            loss, logits_per_image, logits_per_text, text_embeds, image_embeds, text_outputs, vision_outputs
        )
        return output if return_dict else output.to_tuple()


class TFBlipForConditionalGeneration(TFGenerationMixin, TFBlipPreTrainedModel):
    """Image captioning in Keras 3; twin of `blip_torch.BlipForConditionalGeneration`.

    `generate` decodes inside `tf.function(jit_compile=True)` and returns int32 ids.
    """

    config_class = BlipConfig
    main_input_name = "pixel_values"

    def __init__(self, config: BlipConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.vision_model = TFBlipVisionModel(config.vision_config, name="vision_model")
        self.text_decoder = TFBlipTextLMHeadModel(config.text_config, name="text_decoder")
        self.decoder_input_ids = config.text_config.bos_token_id
        self.decoder_pad_token_id = config.text_config.pad_token_id
        self.post_init()

    def build(self, input_shape: Any = None) -> None:
        self.vision_model.build()
        self.text_decoder.build()

    def tie_weights(self, untied: frozenset[str] = frozenset()) -> None:
        self.text_decoder.tie_weights(_prefixed(untied, "text_decoder."))

    def untied_names(self) -> frozenset[str]:
        return frozenset("text_decoder." + name for name in self.text_decoder.untied_names())

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.text_decoder.get_input_embeddings()

    def set_input_embeddings(self, value: keras.layers.Embedding) -> None:
        self.text_decoder.set_input_embeddings(value)

    def call(
        self,
        pixel_values: Any = None,
        input_ids: Any = None,
        attention_mask: Any = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        labels: Any = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
        training: bool = False,
    ) -> BlipForConditionalGenerationModelOutput | tuple:
        if isinstance(pixel_values, dict):  # Keras fit passes the batch dict as the first argument
            return self.call(**pixel_values, training=training)
        output_attentions, output_hidden_states, return_dict = _flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        if input_ids is None:
            raise ValueError(
                "TFBlipForConditionalGeneration.call needs input_ids (the caption); use generate() to caption"
            )
        vision_outputs = _image_features(
            self,
            pixel_values,
            interpolate_pos_encoding,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            training=training,
        )
        image_embeds = vision_outputs.last_hidden_state
        _check_pairing(image_embeds.shape[0], as_tensor(input_ids).shape[0])
        outputs = self.text_decoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            labels=labels,
            return_dict=True,
            reduction="mean",
            training=training,
        )
        output = BlipForConditionalGenerationModelOutput(
            outputs.loss,
            outputs.logits,
            image_embeds,
            vision_outputs.last_hidden_state,
            vision_outputs.hidden_states,
            vision_outputs.attentions,
        )
        return output if return_dict else output.to_tuple()

    def generate(
        self,
        pixel_values: Any,
        input_ids: Any = None,
        attention_mask: Any = None,
        interpolate_pos_encoding: bool = False,
        **generate_kwargs: Any,
    ) -> Any:
        """Caption images; int32 ids (batch * num_return_sequences, length) begin with BOS (and the prompt).

        Options as `BlipForConditionalGeneration.generate`'s, except `max_time` and `streamer`.
        """
        options = self.generation_options(generate_kwargs, "tf")
        text = self.config.text_config
        tokens = special_tokens(options, text)
        pixel_values = as_tensor(pixel_values, tf.float32)
        images = _batch_size(pixel_values, "pixel_values")
        rows = prompt_rows(
            _to_numpy(input_ids), _to_numpy(attention_mask), images, tokens.start, CLS_TOKEN_ID, text.sep_token_id
        )
        for row in rows:  # a prompt too long fails here, before any kernel runs
            options.check_room(len(row), text.max_position_embeddings)
        if not rows:
            return empty_output(options)
        encode = inference_function(
            self,
            ("images", interpolate_pos_encoding, *pixel_values.shape[1:]),
            lambda: lambda pixels: _image_features(self, pixels, interpolate_pos_encoding).last_hidden_state,
            [pixel_signature(pixel_values)],
        )
        image_embeds = encode(pixel_values)
        return decode(self.text_decoder, rows, image_embeds, None, options, tokens)


class TFBlipForImageTextRetrieval(TFBlipPreTrainedModel):
    """Image-text matching and similarity in Keras 3; twin of `blip_torch.BlipForImageTextRetrieval`."""

    config_class = BlipConfig

    def __init__(self, config: BlipConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.vision_model = TFBlipVisionModel(config.vision_config, name="vision_model")
        self.text_encoder = TFBlipTextModel(config.text_config, add_pooling_layer=False, name="text_encoder")
        self.vision_proj = TFLinear(config.vision_config.hidden_size, config.image_text_hidden_size, name="vision_proj")
        self.text_proj = TFLinear(config.text_config.hidden_size, config.image_text_hidden_size, name="text_proj")
        self.itm_head = TFLinear(config.text_config.hidden_size, 2, name="itm_head")
        self.decoder_pad_token_id = config.text_config.pad_token_id
        self.decoder_start_token_id = config.text_config.bos_token_id
        self.post_init()

    def build(self, input_shape: Any = None) -> None:
        for layer in (self.vision_model, self.text_encoder, self.vision_proj, self.text_proj, self.itm_head):
            layer.build()

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.text_encoder.get_input_embeddings()

    def set_input_embeddings(self, value: keras.layers.Embedding) -> None:
        self.text_encoder.set_input_embeddings(value)

    label_inputs = ("match", "labels")  # Keras fit: the 0/1 match labels, in y or in the batch

    def model_loss(self, x: Any, y: Any, y_pred: BlipImageTextMatchingModelOutput, training: bool) -> tf.Tensor:
        """Keras `fit` trains on the ITM + ITC objective of `blip_tf.training`, `y` holding the match labels."""
        from blip_tf.training import itm_objective

        if isinstance(y, dict):
            y = next((y[key] for key in self.label_inputs if key in y), None)
        if y is None:
            raise ValueError(
                f"{type(self).__name__}: training needs the 0/1 match label of each image-text pair, as y "
                "(fit(x, y), or (features, labels) dataset elements) or a 'labels' key of the batch"
            )
        return itm_objective(self, x, y, y_pred.itm_score, training)

    def call(
        self,
        input_ids: Any = None,
        pixel_values: Any = None,
        use_itm_head: bool = True,
        attention_mask: Any = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
        training: bool = False,
    ) -> BlipImageTextMatchingModelOutput | tuple:
        if isinstance(input_ids, dict):  # Keras fit passes the batch dict as the first argument
            return self.call(**input_ids, training=training)
        output_attentions, output_hidden_states, return_dict = _flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        if input_ids is None:
            raise ValueError("TFBlipForImageTextRetrieval needs input_ids and pixel_values")
        input_ids = as_tensor(input_ids)
        vision_outputs = _image_features(
            self,
            pixel_values,
            interpolate_pos_encoding,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            training=training,
        )
        image_embeds = vision_outputs.last_hidden_state
        if use_itm_head:
            _check_pairing(image_embeds.shape[0], input_ids.shape[0])
            question_embeds = self.text_encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                encoder_hidden_states=image_embeds,
                return_dict=True,
                training=training,
            ).last_hidden_state
            itm_score = self.itm_head(question_embeds[:, 0])
        else:
            question_embeds = self.text_encoder(
                input_ids=input_ids, attention_mask=attention_mask, return_dict=True, training=training
            ).last_hidden_state
            image_feat = tf.math.l2_normalize(self.vision_proj(image_embeds[:, 0]), axis=-1, epsilon=1e-24)
            text_feat = tf.math.l2_normalize(self.text_proj(question_embeds[:, 0]), axis=-1, epsilon=1e-24)
            itm_score = tf.matmul(image_feat, text_feat, transpose_b=True)
        output = BlipImageTextMatchingModelOutput(
            itm_score=itm_score,
            last_hidden_state=vision_outputs.last_hidden_state,
            hidden_states=vision_outputs.hidden_states,
            attentions=vision_outputs.attentions,
            question_embeds=question_embeds,
        )
        return output if return_dict else output.to_tuple()


class TFBlipForQuestionAnswering(TFGenerationMixin, TFBlipPreTrainedModel):
    """Visual question answering in Keras 3; twin of `blip_torch.BlipForQuestionAnswering`."""

    config_class = BlipConfig

    def __init__(self, config: BlipConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        check_vqa_widths(config)
        self.vision_model = TFBlipVisionModel(config.vision_config, name="vision_model")
        self.text_encoder = TFBlipTextModel(config.text_config, add_pooling_layer=False, name="text_encoder")
        self.text_decoder = TFBlipTextLMHeadModel(config.text_config, name="text_decoder")
        self.decoder_pad_token_id = config.text_config.pad_token_id
        self.decoder_start_token_id = config.text_config.bos_token_id
        self.post_init()

    def build(self, input_shape: Any = None) -> None:
        for layer in (self.vision_model, self.text_encoder, self.text_decoder):
            layer.build()

    def tie_weights(self, untied: frozenset[str] = frozenset()) -> None:
        self.text_decoder.tie_weights(_prefixed(untied, "text_decoder."))

    def untied_names(self) -> frozenset[str]:
        return frozenset("text_decoder." + name for name in self.text_decoder.untied_names())

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.text_encoder.get_input_embeddings()

    def set_input_embeddings(self, value: keras.layers.Embedding) -> None:
        self.text_encoder.set_input_embeddings(value)

    def _question_embeds(
        self, input_ids, pixel_values, attention_mask, interpolate_pos_encoding, training=False, **vision_kwargs
    ):
        if input_ids is None:
            raise ValueError("TFBlipForQuestionAnswering needs input_ids (the question) and pixel_values")
        input_ids = as_tensor(input_ids)
        vision_outputs = _image_features(
            self, pixel_values, interpolate_pos_encoding, training=training, **vision_kwargs
        )
        _check_pairing(vision_outputs.last_hidden_state.shape[0], input_ids.shape[0])
        question_embeds = self.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=vision_outputs.last_hidden_state,
            return_dict=True,
            training=training,
        ).last_hidden_state
        return vision_outputs, question_embeds

    def call(
        self,
        input_ids: Any = None,
        pixel_values: Any = None,
        decoder_input_ids: Any = None,
        decoder_attention_mask: Any = None,
        attention_mask: Any = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        labels: Any = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
        training: bool = False,
    ) -> BlipTextVisionModelOutput | tuple:
        if isinstance(input_ids, dict):  # Keras fit passes the batch dict as the first argument
            return self.call(**input_ids, training=training)
        output_attentions, output_hidden_states, return_dict = _flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        if labels is None and decoder_input_ids is None:
            raise ValueError(
                "pass decoder_input_ids (answers) or labels to TFBlipForQuestionAnswering.call; "
                "use generate() to answer"
            )
        vision_outputs, question_embeds = self._question_embeds(
            input_ids,
            pixel_values,
            attention_mask,
            interpolate_pos_encoding,
            training=training,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        labels = as_tensor(labels)
        if decoder_input_ids is None:  # labels double as decoder inputs; -100 becomes padding there
            decoder_input_ids = tf.where(
                labels == IGNORE_INDEX, tf.cast(self.decoder_pad_token_id, labels.dtype), labels
            )
        check_answers(question_embeds.shape[0], as_tensor(decoder_input_ids).shape[0])
        answer_output = self.text_decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=question_embeds,
            encoder_attention_mask=attention_mask,
            labels=labels,
            return_dict=True,
            reduction="mean",
            training=training,
        )
        loss = tf.reduce_mean(answer_output.loss) if labels is not None else None
        output = BlipTextVisionModelOutput(
            loss,
            vision_outputs.last_hidden_state,
            vision_outputs.last_hidden_state,
            vision_outputs.hidden_states,
            vision_outputs.attentions,
            answer_output.logits,
        )
        return output if return_dict else output.to_tuple()

    def generate(
        self,
        input_ids: Any,
        pixel_values: Any,
        attention_mask: Any = None,
        interpolate_pos_encoding: bool = False,
        **generate_kwargs: Any,
    ) -> Any:
        """Answer questions about images; int32 ids (batch * num_return_sequences, length) begin with BOS.

        Takes the options `TFBlipForConditionalGeneration.generate` takes.
        """
        options = self.generation_options(generate_kwargs, "tf")
        tokens = special_tokens(options, self.config.text_config, self.decoder_start_token_id)
        if input_ids is None:
            raise ValueError("BlipForQuestionAnswering needs input_ids (the question) and pixel_values")
        input_ids, pixel_values = as_tensor(input_ids, tf.int32), as_tensor(pixel_values, tf.float32)
        images, questions = _batch_size(pixel_values, "pixel_values"), _batch_size(input_ids, "input_ids")
        _check_pairing(images, questions)
        check_text_length(input_ids.shape[1], 0, self.config.text_config.max_position_embeddings)
        if not questions or not images:
            return empty_output(options)
        mask = tf.ones_like(input_ids) if attention_mask is None else as_tensor(attention_mask, tf.int32)
        encode = inference_function(
            self,
            ("questions", interpolate_pos_encoding, *pixel_values.shape[1:]),
            lambda: lambda ids, pixels, mask: self._question_embeds(ids, pixels, mask, interpolate_pos_encoding)[1],
            [
                tf.TensorSpec((None, None), tf.int32),
                pixel_signature(pixel_values),
                tf.TensorSpec((None, None), tf.int32),
            ],
        )
        question_embeds = encode(input_ids, pixel_values, mask)
        rows = [[tokens.start] for _ in range(question_embeds.shape[0])]
        return decode(self.text_decoder, rows, question_embeds, mask, options, tokens)


def _to_numpy(tensor: Any) -> Any:
    if tensor is None or isinstance(tensor, np.ndarray):
        return tensor
    if hasattr(tensor, "detach"):
        return tensor.detach().cpu().numpy()
    return np.asarray(tensor)


def _batch_size(values: Any, name: str) -> int:
    """Rows of a (batch, ...) input, read before anything runs (generate stops early on an empty batch)."""
    shape = getattr(values, "shape", None)
    if shape is None or len(shape) < 2:
        raise ValueError(f"{name} must be a tensor of shape (batch, ...), got {type(values).__name__}")
    return int(shape[0])
