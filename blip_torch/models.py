"""The contrastive `BlipModel` and the helpers the task heads share (`captioning.py`, `retrieval.py`,
`question_answering.py`).

Forward semantics are `transformers`' (REFERENCE §6.3-6.6) except where
REFERENCE §0 decides otherwise: cross-attention masks are applied, VQA
accepts -100 labels and returns logits, generate never mutates its inputs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from blip_core.config.configuration import BlipConfig
from blip_core.modeling.limits import check_loss_rows
from blip_core.modeling.moved_names import forward_moved_names
from blip_core.modeling.outputs import BlipOutput
from blip_torch.layers import Linear
from blip_torch.modeling_utils import BlipPreTrainedModel
from blip_torch.text import BlipTextModel
from blip_torch.vision import BlipVisionModel


def prefixed(untied: frozenset[str], prefix: str) -> frozenset[str]:
    return frozenset(name[len(prefix) :] for name in untied if name.startswith(prefix))


def image_features(model: BlipPreTrainedModel, pixel_values: Any, interpolate_pos_encoding: bool, **kwargs: Any):
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


def contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def blip_loss(similarity: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric loss: text->image and image->text cross-entropy, averaged."""
    return (contrastive_loss(similarity) + contrastive_loss(similarity.t())) / 2.0


def _l2_normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(p=2, dim=-1, keepdim=True)


class BlipModel(BlipPreTrainedModel):
    """Contrastive image and text embeddings (`transformers.BlipModel`).

    No Salesforce checkpoint holds trained weights for its text tower (REFERENCE §2.3).

    >>> model = BlipModel(config)  # doctest: +SKIP
    >>> model(input_ids=ids, pixel_values=pixels).logits_per_image  # doctest: +SKIP
    """

    config_class = BlipConfig

    def __init__(self, config: BlipConfig) -> None:
        super().__init__(config)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.text_model = BlipTextModel(config.text_config)
        self.vision_model = BlipVisionModel(config.vision_config)
        self.visual_projection = Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        self.text_projection = Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.post_init()

    def post_init(self) -> None:
        super().post_init()
        if not self.logit_scale.is_meta:
            with torch.no_grad():
                self.logit_scale.fill_(float(self.config.logit_scale_init_value))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.text_model.set_input_embeddings(value)

    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: Any = None, position_ids: Any = None, return_dict: Any = None
    ) -> torch.Tensor:
        """Unnormalised text embeddings: `text_projection` of the pooled text output."""
        text_outputs = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, return_dict=True
        )
        return self.text_projection(text_outputs.pooler_output)

    def get_image_features(
        self, pixel_values: torch.Tensor, return_dict: Any = None, interpolate_pos_encoding: bool = False
    ) -> torch.Tensor:
        """Unnormalised image embeddings: `visual_projection` of the pooled vision output."""
        vision_outputs = image_features(self, pixel_values, interpolate_pos_encoding)
        return self.visual_projection(vision_outputs.pooler_output)

    def get_multimodal_features(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: Any = None,
        interpolate_pos_encoding: bool = False,
    ) -> torch.Tensor:
        """Text attending to the image, projected: `text_projection` of the pooled multimodal output."""
        image_embeds = image_features(self, pixel_values, interpolate_pos_encoding).last_hidden_state
        text_outputs = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds, return_dict=True
        )
        return self.text_projection(text_outputs.pooler_output)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        return_loss: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> BlipOutput | tuple:
        output_attentions, output_hidden_states, return_dict = output_flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        if input_ids is None:
            raise ValueError("BlipModel needs input_ids and pixel_values")
        if return_loss:  # a contrastive loss needs pairs: none when either side is empty
            rows = (None if pixel_values is None else pixel_values.shape[0], input_ids.shape[0])
            check_loss_rows("the contrastive loss (return_loss=True)", *rows)
        vision_outputs = image_features(
            self,
            pixel_values,
            interpolate_pos_encoding,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        text_outputs = self.text_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        image_embeds = _l2_normalize(self.visual_projection(vision_outputs.pooler_output))
        text_embeds = _l2_normalize(self.text_projection(text_outputs.pooler_output))
        logits_per_text = text_embeds @ image_embeds.t() * self.logit_scale.exp()
        logits_per_image = logits_per_text.t()
        loss = blip_loss(logits_per_text) if return_loss else None
        output = BlipOutput(
            loss, logits_per_image, logits_per_text, text_embeds, image_embeds, text_outputs, vision_outputs
        )
        return output if return_dict else output.to_tuple()


def as_numpy(tensor: Any) -> Any:
    return tensor.detach().cpu().numpy() if isinstance(tensor, torch.Tensor) else tensor


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
        "BlipForConditionalGeneration": "blip_torch.captioning",
        "BlipForImageTextRetrieval": "blip_torch.retrieval",
        "BlipForQuestionAnswering": "blip_torch.question_answering",
    },
)
