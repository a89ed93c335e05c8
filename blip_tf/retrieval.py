"""Image-text retrieval in Keras 3 (`TFBlipForImageTextRetrieval`): the image-text matching (ITM) head, or
the contrastive (ITC) similarity of the projected features, and the `model_loss` that `fit` trains on.
The shared helpers are in `models.py`. Twin of `blip_torch/retrieval.py`.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from blip_core.config.configuration import BlipConfig
from blip_core.modeling.limits import check_pairing as _check_pairing
from blip_core.modeling.outputs import BlipImageTextMatchingModelOutput
from blip_tf.layers import TFLinear
from blip_tf.modeling_utils import TFBlipPreTrainedModel, as_tensor
from blip_tf.models import image_features, output_flags
from blip_tf.text import TFBlipTextModel
from blip_tf.vision import TFBlipVisionModel


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

    def get_image_features(self, pixel_values: Any, interpolate_pos_encoding: bool = False) -> tf.Tensor:
        """(B, image_text_hidden_size) L2-normalised ITC image embeddings: `vision_proj` of the [CLS] state,
        the image side of what `call(use_itm_head=False)` multiplies.

        Raises:
            ValueError: `pixel_values` is None.
        """
        image_embeds = image_features(self, pixel_values, interpolate_pos_encoding).last_hidden_state
        return tf.math.l2_normalize(self.vision_proj(image_embeds[:, 0]), axis=-1, epsilon=1e-24)

    def get_text_features(self, input_ids: Any, attention_mask: Any = None) -> tf.Tensor:
        """(B, image_text_hidden_size) L2-normalised ITC text embeddings: `text_proj` of the first token's
        state from the text encoder alone (no image), the text side of `call(use_itm_head=False)`."""
        states = self.text_encoder(input_ids=as_tensor(input_ids), attention_mask=attention_mask, return_dict=True)
        return tf.math.l2_normalize(self.text_proj(states.last_hidden_state[:, 0]), axis=-1, epsilon=1e-24)

    def get_multimodal_features(
        self,
        input_ids: Any,
        pixel_values: Any = None,
        attention_mask: Any = None,
        interpolate_pos_encoding: bool = False,
        image_embeds: Any = None,
    ) -> tf.Tensor:
        """(B, text hidden) first-token states of the ITM pass (text attending to its image, row by row):
        `itm_head` of them is `call(use_itm_head=True).itm_score`. `image_embeds` (B, patches + 1, vision
        hidden), the vision model's `last_hidden_state`, replaces `pixel_values` when an image is reused.

        Raises:
            ValueError: neither `pixel_values` nor `image_embeds`, or image and text batch sizes differ.
        """
        if image_embeds is None:
            image_embeds = image_features(self, pixel_values, interpolate_pos_encoding).last_hidden_state
        input_ids = as_tensor(input_ids)
        _check_pairing(image_embeds.shape[0], input_ids.shape[0])
        states = self.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds, return_dict=True
        )
        return states.last_hidden_state[:, 0]

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
        output_attentions, output_hidden_states, return_dict = output_flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        if input_ids is None:
            raise ValueError("TFBlipForImageTextRetrieval needs input_ids and pixel_values")
        input_ids = as_tensor(input_ids)
        vision_outputs = image_features(
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
