"""Image captioning (`BlipForConditionalGeneration`, REFERENCE §6.3): the vision encoder feeding the text
decoder, its LM loss, and `generate` through `generation.py`. The shared helpers are in `models.py`.
Twin of `blip_tf/captioning.py`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from blip_core.config.configuration import BlipConfig
from blip_core.config.model_constants import CLS_TOKEN_ID
from blip_core.generation.options import special_tokens
from blip_core.generation.prompts import prompt_rows
from blip_core.generation.sampling import check_sampling_seeds
from blip_core.modeling.limits import check_pairing as _check_pairing
from blip_core.modeling.outputs import BlipForConditionalGenerationModelOutput
from blip_torch.generation import GenerationMixin, empty_output
from blip_torch.generation import generate as decode
from blip_torch.modeling_utils import BlipPreTrainedModel
from blip_torch.models import as_numpy, batch_size_of, image_features, output_flags, prefixed
from blip_torch.text import BlipTextLMHeadModel
from blip_torch.vision import BlipVisionModel


class BlipForConditionalGeneration(GenerationMixin, BlipPreTrainedModel):
    """Image captioning (`transformers.BlipForConditionalGeneration`).

    >>> ids = model.generate(pixel_values)  # doctest: +SKIP
    >>> processor.batch_decode(ids, skip_special_tokens=True)  # doctest: +SKIP
    """

    config_class = BlipConfig
    main_input_name = "pixel_values"

    def __init__(self, config: BlipConfig) -> None:
        super().__init__(config)
        self.vision_model = BlipVisionModel(config.vision_config)
        self.text_decoder = BlipTextLMHeadModel(config.text_config)
        self.decoder_input_ids = config.text_config.bos_token_id
        self.decoder_pad_token_id = config.text_config.pad_token_id
        self.post_init()

    def tie_weights(self, untied: frozenset[str] = frozenset()) -> None:
        self.text_decoder.tie_weights(prefixed(untied, "text_decoder."))

    def untied_names(self) -> frozenset[str]:
        return frozenset("text_decoder." + name for name in self.text_decoder.untied_names())

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_decoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.text_decoder.set_input_embeddings(value)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> BlipForConditionalGenerationModelOutput | tuple:
        output_attentions, output_hidden_states, return_dict = output_flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        if input_ids is None:
            raise ValueError(
                "BlipForConditionalGeneration.forward needs input_ids (the caption); use generate() to caption"
            )
        vision_outputs = image_features(
            self,
            pixel_values,
            interpolate_pos_encoding,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        image_embeds = vision_outputs.last_hidden_state
        _check_pairing(image_embeds.shape[0], input_ids.shape[0])
        outputs = self.text_decoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            labels=labels,
            return_dict=True,
            reduction="mean",
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
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **generate_kwargs: Any,
    ) -> Any:
        """Caption images; ids (batch * num_return_sequences, length) begin with BOS (and the prompt).

        Options: `transformers`' generate arguments and `generation_config=` (blip_core.generation.options);
        with `return_dict_in_generate=True`, an output with `sequences`, `scores`, `sequences_scores`...
        `sampling_seeds=[...]` (one non-negative int per image; needs `do_sample=True`, `num_beams=1`): each image's
        rows are sampled from its own seed alone (blip_core.generation.sampling), the same ids in any batch and in
        both trees; `seed` is then ignored.
        """
        options = self.generation_options(generate_kwargs, "pt")
        text = self.config.text_config
        tokens = special_tokens(options, text)
        images = batch_size_of(pixel_values, "pixel_values")
        rows = prompt_rows(
            as_numpy(input_ids), as_numpy(attention_mask), images, tokens.start, CLS_TOKEN_ID, text.sep_token_id
        )
        check_sampling_seeds(options.sampling_seeds, len(rows))
        for row in rows:  # a prompt too long fails here, before any kernel runs
            options.check_room(len(row), text.max_position_embeddings)
        if not rows:
            return empty_output(options, pixel_values.device)
        with torch.no_grad():
            image_embeds = image_features(self, pixel_values, interpolate_pos_encoding).last_hidden_state
        return decode(self.text_decoder, rows, image_embeds, None, options, tokens, owner=self)
