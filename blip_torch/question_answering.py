"""Visual question answering (`BlipForQuestionAnswering`, REFERENCE §6.4): the question encoded with
cross-attention to the image, the answer decoder's loss, and `generate` through `generation.py`.
The shared helpers are in `models.py`. Twin of `blip_tf/question_answering.py`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from blip_core.config.configuration import BlipConfig, check_vqa_widths
from blip_core.config.model_constants import IGNORE_INDEX, ORIGINAL_LABEL_SMOOTHING
from blip_core.generation.options import special_tokens
from blip_core.generation.sampling import check_sampling_seeds
from blip_core.modeling.answer_ranking import DEFAULT_RANK_K, check_candidate_ids, check_ranking_inputs
from blip_core.modeling.limits import check_answers, check_text_length
from blip_core.modeling.limits import check_pairing as _check_pairing
from blip_core.modeling.outputs import BlipAnswerRankingOutput, BlipTextVisionModelOutput
from blip_torch.generation import GenerationMixin, empty_output
from blip_torch.generation import generate as decode
from blip_torch.modeling_utils import BlipPreTrainedModel
from blip_torch.models import batch_size_of, image_features, output_flags, prefixed
from blip_torch.text import BlipTextLMHeadModel, BlipTextModel, lm_loss
from blip_torch.vision import BlipVisionModel


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
        self.text_decoder.tie_weights(prefixed(untied, "text_decoder."))

    def untied_names(self) -> frozenset[str]:
        return frozenset("text_decoder." + name for name in self.text_decoder.untied_names())

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.text_encoder.set_input_embeddings(value)

    def _question_embeds(self, input_ids, pixel_values, attention_mask, interpolate_pos_encoding, **vision_kwargs):
        if input_ids is None:
            raise ValueError("BlipForQuestionAnswering needs input_ids (the question) and pixel_values")
        vision_outputs = image_features(self, pixel_values, interpolate_pos_encoding, **vision_kwargs)
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
        output_attentions, output_hidden_states, return_dict = output_flags(
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

        Takes the options `BlipForConditionalGeneration.generate` takes (`sampling_seeds`: one per question).
        """
        options = self.generation_options(generate_kwargs, "pt")
        tokens = special_tokens(options, self.config.text_config, self.decoder_start_token_id)
        if input_ids is None:
            raise ValueError("BlipForQuestionAnswering needs input_ids (the question) and pixel_values")
        images, questions = batch_size_of(pixel_values, "pixel_values"), batch_size_of(input_ids, "input_ids")
        _check_pairing(images, questions)
        check_sampling_seeds(options.sampling_seeds, questions, "questions")
        check_text_length(input_ids.shape[1], 0, self.config.text_config.max_position_embeddings)
        if not questions or not images:
            return empty_output(options, input_ids.device)
        with torch.no_grad():
            _, question_embeds = self._question_embeds(
                input_ids, pixel_values, attention_mask, interpolate_pos_encoding
            )
        rows = [[tokens.start] for _ in range(question_embeds.shape[0])]
        return decode(self.text_decoder, rows, question_embeds, attention_mask, options, tokens, owner=self)

    def rank_answers(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        candidate_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        candidate_attention_mask: torch.Tensor | None = None,
        k: int = DEFAULT_RANK_K,
        interpolate_pos_encoding: bool = False,
    ) -> BlipAnswerRankingOutput:
        """Rank candidate answers per question, as the original BLIP's `rank_answer` (salesforce/BLIP
        `models/blip_vqa.py`, its `inference='rank'`, `k_test=128`).

        The question is encoded against the image; one decoder step from BOS gives every candidate's
        first-token probability; the k best (ties: the lower index) are teacher-forced through the decoder.
        A candidate's score is minus the original decoder loss summed over its tokens (first answer token
        through [SEP], padding ignored), with the original's label smoothing 0.1 whatever the config says: a
        log-likelihood-like number, higher is better, not a probability. It is not combined with the
        first-token probability.

        Args:
            pixel_values: (B, 3, H, W) float. input_ids, attention_mask: (B, L) questions.
            candidate_ids: (N, T) int, [DEC] (any first token: it is replaced by BOS) then the answer and [SEP],
                padded (`BlipProcessor.tokenize_answers`). candidate_attention_mask: (N, T), default ids != pad.
            k: candidates re-scored per question; k' = min(k, N) are returned.

        Returns:
            `BlipAnswerRankingOutput`: `indices` (B, k') int64 rows of `candidate_ids`, `scores` (B, k') float32,
            best first.

        Raises:
            TypeError/ValueError: a bad `k`, bad shapes, token ids outside the vocabulary.
        """
        kept = check_ranking_inputs(
            tuple(candidate_ids.shape),
            None if candidate_attention_mask is None else tuple(candidate_attention_mask.shape),
            tuple(input_ids.shape),
            None if attention_mask is None else tuple(attention_mask.shape),
            k,
        )
        check_candidate_ids(int(candidate_ids.min()), int(candidate_ids.max()), self.config.text_config.vocab_size)
        _check_pairing(batch_size_of(pixel_values, "pixel_values"), batch_size_of(input_ids, "input_ids"))
        check_text_length(input_ids.shape[1], 0, self.config.text_config.max_position_embeddings)
        check_text_length(candidate_ids.shape[1], 0, self.config.text_config.max_position_embeddings)
        if input_ids.shape[0] == 0:
            empty = torch.zeros((0, kept), device=input_ids.device)
            return BlipAnswerRankingOutput(indices=empty.long(), scores=empty.float())
        with torch.no_grad():
            _, question_embeds = self._question_embeds(
                input_ids, pixel_values, attention_mask, interpolate_pos_encoding
            )
            if attention_mask is None:
                attention_mask = torch.ones(input_ids.shape, dtype=torch.long, device=input_ids.device)
            answers, answer_mask = self._candidate_rows(candidate_ids, candidate_attention_mask)
            shortlist = self._first_token_shortlist(question_embeds, attention_mask, answers[:, 1], kept)
            rows = [
                self._score_candidates(question_embeds[i], attention_mask[i], answers, answer_mask, shortlist[i])
                for i in range(question_embeds.shape[0])
            ]
        indices = torch.stack([index for index, _ in rows])
        scores = torch.stack([score for _, score in rows])
        return BlipAnswerRankingOutput(indices=indices.long(), scores=scores.float())

    def _candidate_rows(self, candidate_ids, candidate_attention_mask):
        """(ids with BOS first, mask) of the candidates."""
        if candidate_attention_mask is None:
            candidate_attention_mask = (candidate_ids != self.decoder_pad_token_id).long()
        answers = candidate_ids.long().clone()
        answers[:, 0] = self.decoder_start_token_id
        return answers, candidate_attention_mask.long()

    def _first_token_shortlist(self, question_embeds, attention_mask, first_tokens, kept):
        """(B, kept) candidate rows with the highest first-token probability after BOS (stable order)."""
        start = torch.full((question_embeds.shape[0], 1), self.decoder_start_token_id, device=first_tokens.device)
        logits = self.text_decoder(
            input_ids=start, encoder_hidden_states=question_embeds, encoder_attention_mask=attention_mask
        ).logits[:, 0, :]
        probabilities = torch.softmax(logits.float(), dim=-1)[:, first_tokens]
        return torch.sort(probabilities, dim=-1, descending=True, stable=True).indices[:, :kept]

    def _score_candidates(self, states, mask, answers, answer_mask, chosen):
        """(candidate rows, scores) of one question's shortlist, best first."""
        ids, ids_mask = answers[chosen], answer_mask[chosen]
        labels = ids.masked_fill(ids_mask == 0, IGNORE_INDEX)
        # One row of question states for all candidates: the cross-attention computes its keys/values once
        # and folds the candidates into the query axis (as for beams), never copying them.
        logits = self.text_decoder(
            input_ids=ids,
            attention_mask=ids_mask,
            encoder_hidden_states=states[None],
            encoder_attention_mask=mask[None],
        ).logits
        scores = -lm_loss(logits, labels, ORIGINAL_LABEL_SMOOTHING, "none")
        order = torch.sort(scores, descending=True, stable=True).indices
        return chosen[order], scores[order]
