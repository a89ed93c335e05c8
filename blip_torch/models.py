"""The task models: contrastive `BlipModel`, captioning, image-text retrieval, question answering.

Forward semantics are `transformers`' (REFERENCE §6.3-6.6) except where
REFERENCE §0 decides otherwise: cross-attention masks are applied, VQA
accepts -100 labels and returns logits, generate never mutates its inputs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

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
from blip_torch.generation import GenerationMixin, empty_output
from blip_torch.generation import generate as decode
from blip_torch.modeling_utils import BlipPreTrainedModel, Linear
from blip_torch.text import BlipTextLMHeadModel, BlipTextModel
from blip_torch.vision import BlipVisionModel


def _prefixed(untied: frozenset[str], prefix: str) -> frozenset[str]:
    return frozenset(name[len(prefix) :] for name in untied if name.startswith(prefix))


def _image_features(model: BlipPreTrainedModel, pixel_values: Any, interpolate_pos_encoding: bool, **kwargs: Any):
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
        vision_outputs = _image_features(self, pixel_values, interpolate_pos_encoding)
        return self.visual_projection(vision_outputs.pooler_output)

    def get_multimodal_features(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: Any = None,
        interpolate_pos_encoding: bool = False,
    ) -> torch.Tensor:
        """Text attending to the image, projected: `text_projection` of the pooled multimodal output."""
        image_embeds = _image_features(self, pixel_values, interpolate_pos_encoding).last_hidden_state
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
        output_attentions, output_hidden_states, return_dict = _flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        if input_ids is None:
            raise ValueError("BlipModel needs input_ids and pixel_values")
        if return_loss:  # a contrastive loss needs pairs: none when either side is empty
            rows = (None if pixel_values is None else pixel_values.shape[0], input_ids.shape[0])
            check_loss_rows("the contrastive loss (return_loss=True)", *rows)
        vision_outputs = _image_features(
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
        self.text_decoder.tie_weights(_prefixed(untied, "text_decoder."))

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
        output_attentions, output_hidden_states, return_dict = _flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        if input_ids is None:
            raise ValueError(
                "BlipForConditionalGeneration.forward needs input_ids (the caption); use generate() to caption"
            )
        vision_outputs = _image_features(
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
        """
        options = self.generation_options(generate_kwargs, "pt")
        text = self.config.text_config
        tokens = special_tokens(options, text)
        images = _batch_size(pixel_values, "pixel_values")
        rows = prompt_rows(
            _to_numpy(input_ids), _to_numpy(attention_mask), images, tokens.start, CLS_TOKEN_ID, text.sep_token_id
        )
        for row in rows:  # a prompt too long fails here, before any kernel runs
            options.check_room(len(row), text.max_position_embeddings)
        if not rows:
            return empty_output(options, pixel_values.device)
        with torch.no_grad():
            image_embeds = _image_features(self, pixel_values, interpolate_pos_encoding).last_hidden_state
        return decode(self.text_decoder, rows, image_embeds, None, options, tokens)


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
        output_attentions, output_hidden_states, return_dict = _flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        if input_ids is None:
            raise ValueError("BlipForImageTextRetrieval needs input_ids and pixel_values")
        vision_outputs = _image_features(
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


class BlipForQuestionAnswering(GenerationMixin, BlipPreTrainedModel):
    """Visual question answering (`transformers.BlipForQuestionAnswering`).

    >>> answer_ids = model.generate(input_ids=question_ids, pixel_values=pixels)  # doctest: +SKIP
    """

    config_class = BlipConfig

    def __init__(self, config: BlipConfig) -> None:
        super().__init__(config)
        check_vqa_widths(config)
        self.vision_model = BlipVisionModel(config.vision_config)
        self.text_encoder = BlipTextModel(config.text_config, add_pooling_layer=False)
        self.text_decoder = BlipTextLMHeadModel(config.text_config)
        self.decoder_pad_token_id = config.text_config.pad_token_id
        self.decoder_start_token_id = config.text_config.bos_token_id
        self.post_init()

    def tie_weights(self, untied: frozenset[str] = frozenset()) -> None:
        self.text_decoder.tie_weights(_prefixed(untied, "text_decoder."))

    def untied_names(self) -> frozenset[str]:
        return frozenset("text_decoder." + name for name in self.text_decoder.untied_names())

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.text_encoder.set_input_embeddings(value)

    def _question_embeds(self, input_ids, pixel_values, attention_mask, interpolate_pos_encoding, **vision_kwargs):
        if input_ids is None:
            raise ValueError("BlipForQuestionAnswering needs input_ids (the question) and pixel_values")
        vision_outputs = _image_features(self, pixel_values, interpolate_pos_encoding, **vision_kwargs)
        _check_pairing(vision_outputs.last_hidden_state.shape[0], input_ids.shape[0])
        question_embeds = self.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=vision_outputs.last_hidden_state,
            return_dict=True,
        ).last_hidden_state
        return vision_outputs, question_embeds

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> BlipTextVisionModelOutput | tuple:
        output_attentions, output_hidden_states, return_dict = _flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        if labels is None and decoder_input_ids is None:
            raise ValueError(
                "pass decoder_input_ids (answers) or labels to BlipForQuestionAnswering.forward; "
                "use generate() to answer"
            )
        vision_outputs, question_embeds = self._question_embeds(
            input_ids,
            pixel_values,
            attention_mask,
            interpolate_pos_encoding,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        if decoder_input_ids is None:  # labels double as decoder inputs; -100 becomes padding there
            decoder_input_ids = labels.masked_fill(labels == IGNORE_INDEX, self.decoder_pad_token_id)
        check_answers(question_embeds.shape[0], decoder_input_ids.shape[0])
        answer_output = self.text_decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=question_embeds,
            encoder_attention_mask=attention_mask,
            labels=labels,
            return_dict=True,
            reduction="mean",
        )
        loss = answer_output.loss.mean() if labels is not None else None
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
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **generate_kwargs: Any,
    ) -> Any:
        """Answer questions about images; ids (batch * num_return_sequences, length) begin with BOS.

        Takes the options `BlipForConditionalGeneration.generate` takes.
        """
        options = self.generation_options(generate_kwargs, "pt")
        tokens = special_tokens(options, self.config.text_config, self.decoder_start_token_id)
        if input_ids is None:
            raise ValueError("BlipForQuestionAnswering needs input_ids (the question) and pixel_values")
        images, questions = _batch_size(pixel_values, "pixel_values"), _batch_size(input_ids, "input_ids")
        _check_pairing(images, questions)
        check_text_length(input_ids.shape[1], 0, self.config.text_config.max_position_embeddings)
        if not questions or not images:
            return empty_output(options, input_ids.device)
        with torch.no_grad():
            _, question_embeds = self._question_embeds(
                input_ids, pixel_values, attention_mask, interpolate_pos_encoding
            )
        rows = [[tokens.start] for _ in range(question_embeds.shape[0])]
        return decode(self.text_decoder, rows, question_embeds, attention_mask, options, tokens)


def _to_numpy(tensor: Any) -> Any:
    return tensor.detach().cpu().numpy() if isinstance(tensor, torch.Tensor) else tensor


def _batch_size(values: Any, name: str) -> int:
    """Rows of a (batch, ...) input, read before anything runs (generate stops early on an empty batch)."""
    shape = getattr(values, "shape", None)
    if shape is None or len(shape) < 2:
        raise ValueError(f"{name} must be a tensor of shape (batch, ...), got {type(values).__name__}")
    return int(shape[0])
