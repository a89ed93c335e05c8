"""Image-text retrieval (`BlipForImageTextRetrieval`, REFERENCE §6.5): the image-text matching (ITM) head
over the text encoder with cross-attention to the image, or the contrastive (ITC) similarity of the
projected features. The shared helpers are in `models.py`. Twin of `blip_tf/retrieval.py`.
"""

from __future__ import annotations

import torch
from torch import nn

from blip_core.config.configuration import BlipConfig
from blip_core.modeling.limits import check_pairing as _check_pairing
from blip_core.modeling.outputs import BlipImageTextMatchingModelOutput
from blip_torch.layers import Linear
from blip_torch.modeling_utils import BlipPreTrainedModel
from blip_torch.models import image_features, output_flags
from blip_torch.text import BlipTextModel
from blip_torch.vision import BlipVisionModel


class BlipForImageTextRetrieval(BlipPreTrainedModel):
    """Image-text matching (ITM head) and similarity (ITC) (`transformers.BlipForImageTextRetrieval`).

    >>> model(input_ids=ids, pixel_values=pixels).itm_score.softmax(-1)[:, 1]  # doctest: +SKIP
    """

    config_class = BlipConfig

    def __init__(self, config: BlipConfig) -> None:
        super().__init__(config)
        self.vision_model = BlipVisionModel(config.vision_config)
        self.text_encoder = BlipTextModel(config.text_config, add_pooling_layer=False)
        self.vision_proj = Linear(config.vision_config.hidden_size, config.image_text_hidden_size)
        self.text_proj = Linear(config.text_config.hidden_size, config.image_text_hidden_size)
        self.itm_head = Linear(config.text_config.hidden_size, 2)
        self.decoder_pad_token_id = config.text_config.pad_token_id
        self.decoder_start_token_id = config.text_config.bos_token_id
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.text_encoder.set_input_embeddings(value)

    def get_image_features(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        """(B, image_text_hidden_size) L2-normalised ITC image embeddings: `vision_proj` of the [CLS] state,
        the image side of what `forward(use_itm_head=False)` multiplies.

        Raises:
            ValueError: `pixel_values` is None.
        """
        image_embeds = image_features(self, pixel_values, interpolate_pos_encoding).last_hidden_state
        return nn.functional.normalize(self.vision_proj(image_embeds[:, 0]), dim=-1)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, image_text_hidden_size) L2-normalised ITC text embeddings: `text_proj` of the first token's
        state from the text encoder alone (no image), the text side of `forward(use_itm_head=False)`."""
        states = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return nn.functional.normalize(self.text_proj(states.last_hidden_state[:, 0]), dim=-1)

    def get_multimodal_features(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        image_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, text hidden) first-token states of the ITM pass (text attending to its image, row by row):
        `itm_head` of them is `forward(use_itm_head=True).itm_score`. `image_embeds` (B, patches + 1, vision
        hidden), the vision model's `last_hidden_state`, replaces `pixel_values` when an image is reused.

        Raises:
            ValueError: neither `pixel_values` nor `image_embeds`, or image and text batch sizes differ.
        """
        if image_embeds is None:
            image_embeds = image_features(self, pixel_values, interpolate_pos_encoding).last_hidden_state
        _check_pairing(image_embeds.shape[0], input_ids.shape[0])
        states = self.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds, return_dict=True
        )
        return states.last_hidden_state[:, 0]

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        use_itm_head: bool = True,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> BlipImageTextMatchingModelOutput | tuple:
        output_attentions, output_hidden_states, return_dict = output_flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        if input_ids is None:
            raise ValueError("BlipForImageTextRetrieval needs input_ids and pixel_values")
        vision_outputs = image_features(
            self,
            pixel_values,
            interpolate_pos_encoding,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        image_embeds = vision_outputs.last_hidden_state
        if use_itm_head:
            _check_pairing(image_embeds.shape[0], input_ids.shape[0])
            question_embeds = self.text_encoder(
                input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds, return_dict=True
            ).last_hidden_state
            itm_score = self.itm_head(question_embeds[:, 0])
        else:
            question_embeds = self.text_encoder(
                input_ids=input_ids, attention_mask=attention_mask, return_dict=True
            ).last_hidden_state
            image_feat = nn.functional.normalize(self.vision_proj(image_embeds[:, 0]), dim=-1)
            text_feat = nn.functional.normalize(self.text_proj(question_embeds[:, 0]), dim=-1)
            itm_score = image_feat @ text_feat.t()
        output = BlipImageTextMatchingModelOutput(
            itm_score=itm_score,
            last_hidden_state=vision_outputs.last_hidden_state,
            hidden_states=vision_outputs.hidden_states,
            attentions=vision_outputs.attentions,
            question_embeds=question_embeds,
        )
        return output if return_dict else output.to_tuple()
