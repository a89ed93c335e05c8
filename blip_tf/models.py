"""The contrastive `TFBlipModel` in Keras 3 and the helpers the task heads share (`captioning.py`,
`retrieval.py`, `question_answering.py`).

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

from blip_core.config.configuration import BlipConfig
from blip_core.modeling.limits import check_loss_rows
from blip_core.modeling.moved_names import forward_moved_names
from blip_core.modeling.outputs import BlipOutput
from blip_tf.layers import TFLinear
from blip_tf.modeling_utils import TFBlipPreTrainedModel, as_tensor
from blip_tf.text import TFBlipTextModel
from blip_tf.vision import TFBlipVisionModel


def prefixed(untied: frozenset[str], prefix: str) -> frozenset[str]:
    return frozenset(name[len(prefix) :] for name in untied if name.startswith(prefix))


def image_features(model: TFBlipPreTrainedModel, pixel_values: Any, interpolate_pos_encoding: bool, **kwargs: Any):
    if pixel_values is None:
        raise ValueError(f"{type(model).__name__} needs pixel_values of shape (batch, 3, height, width)")
    return model.vision_model(
        pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, return_dict=True, **kwargs
    )


def output_flags(config: BlipConfig, output_attentions: Any, output_hidden_states: Any, return_dict: Any) -> tuple:
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
        vision_outputs = image_features(self, pixel_values, interpolate_pos_encoding)
        return self.visual_projection(vision_outputs.pooler_output)

    def get_multimodal_features(
        self, input_ids: Any, pixel_values: Any, attention_mask: Any = None, interpolate_pos_encoding: bool = False
    ) -> tf.Tensor:
        """Text attending to the image, projected: `text_projection` of the pooled multimodal output."""
        image_embeds = image_features(self, pixel_values, interpolate_pos_encoding).last_hidden_state
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
        output_attentions, output_hidden_states, return_dict = output_flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        if input_ids is None:
            raise ValueError("TFBlipModel needs input_ids and pixel_values")
        if return_loss:  # a contrastive loss needs pairs: none when either side is empty
            rows = (None if pixel_values is None else as_tensor(pixel_values).shape[0], as_tensor(input_ids).shape[0])
            check_loss_rows("the contrastive loss (return_loss=True)", *rows)
        vision_outputs = image_features(
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


def as_numpy(tensor: Any) -> Any:
    if tensor is None or isinstance(tensor, np.ndarray):
        return tensor
    if hasattr(tensor, "detach"):
        return tensor.detach().cpu().numpy()
    return np.asarray(tensor)


def batch_size_of(values: Any, name: str) -> int:
    """Rows of a (batch, ...) input, read before anything runs (generate stops early on an empty batch)."""
    shape = getattr(values, "shape", None)
    if shape is None or len(shape) < 2:
        raise ValueError(f"{name} must be a tensor of shape (batch, ...), got {type(values).__name__}")
    return int(shape[0])


# Names defined here before this file was split: old imports and whole-model pickles keep working.
__getattr__ = forward_moved_names(
    __name__,
    {
        "TFBlipForConditionalGeneration": "blip_tf.captioning",
        "TFBlipForImageTextRetrieval": "blip_tf.retrieval",
        "TFBlipForQuestionAnswering": "blip_tf.question_answering",
    },
)
