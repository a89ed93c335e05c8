"""Visual question answering in Keras 3 (`TFBlipForQuestionAnswering`): the question encoded with
cross-attention to the image, the answer decoder's loss, and `generate` through `generation.py`
(the question encoder runs as a cached graph function). The shared helpers are in `models.py`.
Twin of `blip_torch/question_answering.py`.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from blip_core.config.configuration import BlipConfig, check_vqa_widths
from blip_core.config.model_constants import IGNORE_INDEX, ORIGINAL_LABEL_SMOOTHING
from blip_core.generation.options import special_tokens
from blip_core.generation.sampling import check_sampling_seeds
from blip_core.modeling.answer_ranking import DEFAULT_RANK_K, check_candidate_ids, check_ranking_inputs
from blip_core.modeling.limits import check_answers, check_text_length
from blip_core.modeling.limits import check_pairing as _check_pairing
from blip_core.modeling.outputs import BlipAnswerRankingOutput, BlipTextVisionModelOutput
from blip_tf.generation import TFGenerationMixin, empty_output
from blip_tf.generation import generate as decode
from blip_tf.modeling_utils import TFBlipPreTrainedModel, as_tensor, inference_function, pixel_signature
from blip_tf.models import batch_size_of, image_features, output_flags, prefixed
from blip_tf.text import TFBlipTextLMHeadModel, TFBlipTextModel, lm_loss
from blip_tf.vision import TFBlipVisionModel


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
        self.text_decoder.tie_weights(prefixed(untied, "text_decoder."))

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
        vision_outputs = image_features(
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
        output_attentions, output_hidden_states, return_dict = output_flags(
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

        Takes the options `TFBlipForConditionalGeneration.generate` takes (`sampling_seeds`: one per question).
        """
        options = self.generation_options(generate_kwargs, "tf")
        tokens = special_tokens(options, self.config.text_config, self.decoder_start_token_id)
        if input_ids is None:
            raise ValueError("BlipForQuestionAnswering needs input_ids (the question) and pixel_values")
        input_ids, pixel_values = as_tensor(input_ids, tf.int32), as_tensor(pixel_values, tf.float32)
        images, questions = batch_size_of(pixel_values, "pixel_values"), batch_size_of(input_ids, "input_ids")
        _check_pairing(images, questions)
        check_sampling_seeds(options.sampling_seeds, questions, "questions")
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

    def rank_answers(
        self,
        pixel_values: Any,
        input_ids: Any,
        candidate_ids: Any,
        attention_mask: Any = None,
        candidate_attention_mask: Any = None,
        k: int = DEFAULT_RANK_K,
        interpolate_pos_encoding: bool = False,
    ) -> BlipAnswerRankingOutput:
        """Rank candidate answers per question, as the original BLIP's `rank_answer`; twin of
        `BlipForQuestionAnswering.rank_answers` (its docstring has the algorithm and the score's meaning).

        Returns `BlipAnswerRankingOutput`: `indices` (B, k') int64 rows of `candidate_ids`, `scores` (B, k')
        float32, best first, k' = min(k, N). Raises TypeError/ValueError for a bad `k`, bad shapes or token ids.
        """
        input_ids, candidate_ids = as_tensor(input_ids, tf.int32), as_tensor(candidate_ids, tf.int32)
        attention_mask = as_tensor(attention_mask, tf.int32)
        candidate_attention_mask = as_tensor(candidate_attention_mask, tf.int32)
        kept = check_ranking_inputs(
            tuple(candidate_ids.shape),
            None if candidate_attention_mask is None else tuple(candidate_attention_mask.shape),
            tuple(input_ids.shape),
            None if attention_mask is None else tuple(attention_mask.shape),
            k,
        )
        check_candidate_ids(
            int(tf.reduce_min(candidate_ids)), int(tf.reduce_max(candidate_ids)), self.config.text_config.vocab_size
        )
        _check_pairing(batch_size_of(pixel_values, "pixel_values"), batch_size_of(input_ids, "input_ids"))
        check_text_length(input_ids.shape[1], 0, self.config.text_config.max_position_embeddings)
        check_text_length(candidate_ids.shape[1], 0, self.config.text_config.max_position_embeddings)
        if input_ids.shape[0] == 0:
            return BlipAnswerRankingOutput(indices=tf.zeros((0, kept), tf.int64), scores=tf.zeros((0, kept)))
        pixel_values = as_tensor(pixel_values, tf.float32)
        _, question_embeds = self._question_embeds(input_ids, pixel_values, attention_mask, interpolate_pos_encoding)
        if attention_mask is None:
            attention_mask = tf.ones_like(input_ids)
        answers, answer_mask = self._candidate_rows(candidate_ids, candidate_attention_mask)
        shortlist = self._first_token_shortlist(question_embeds, attention_mask, answers[:, 1], kept)
        rows = [
            self._score_candidates(question_embeds[i], attention_mask[i], answers, answer_mask, shortlist[i])
            for i in range(question_embeds.shape[0])
        ]
        indices = tf.stack([index for index, _ in rows])
        scores = tf.stack([score for _, score in rows])
        return BlipAnswerRankingOutput(indices=tf.cast(indices, tf.int64), scores=tf.cast(scores, tf.float32))

    def _candidate_rows(self, candidate_ids, candidate_attention_mask):
        """(ids with BOS first, mask) of the candidates."""
        if candidate_attention_mask is None:
            candidate_attention_mask = tf.cast(candidate_ids != self.decoder_pad_token_id, tf.int32)
        start = tf.fill((candidate_ids.shape[0], 1), tf.constant(self.decoder_start_token_id, tf.int32))
        answers = tf.concat([start, candidate_ids[:, 1:]], axis=1)
        return answers, candidate_attention_mask

    def _first_token_shortlist(self, question_embeds, attention_mask, first_tokens, kept):
        """(B, kept) candidate rows with the highest first-token probability after BOS (stable order)."""
        start = tf.fill((question_embeds.shape[0], 1), tf.constant(self.decoder_start_token_id, tf.int32))
        logits = self.text_decoder(
            input_ids=start, encoder_hidden_states=question_embeds, encoder_attention_mask=attention_mask
        ).logits[:, 0, :]
        probabilities = tf.gather(tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1), first_tokens, axis=1)
        return tf.argsort(probabilities, axis=-1, direction="DESCENDING", stable=True)[:, :kept]

    def _score_candidates(self, states, mask, answers, answer_mask, chosen):
        """(candidate rows, scores) of one question's shortlist, best first."""
        ids, ids_mask = tf.gather(answers, chosen), tf.gather(answer_mask, chosen)
        labels = tf.where(ids_mask == 0, tf.constant(IGNORE_INDEX, ids.dtype), ids)
        # One row of question states for all candidates: the cross-attention computes its keys/values once
        # and folds the candidates into the query axis (as for beams), never copying them.
        logits = self.text_decoder(
            input_ids=ids,
            attention_mask=ids_mask,
            encoder_hidden_states=states[None],
            encoder_attention_mask=mask[None],
        ).logits
        scores = -lm_loss(logits, labels, ORIGINAL_LABEL_SMOOTHING, "none")
        order = tf.argsort(scores, direction="DESCENDING", stable=True)
        return tf.gather(chosen, order), tf.gather(scores, order)
