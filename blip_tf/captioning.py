"""Image captioning in Keras 3 (`TFBlipForConditionalGeneration`): the vision encoder feeding the text
decoder, its LM loss, and `generate` through `generation.py` (the image encoder runs as a cached graph
function). The shared helpers are in `models.py`. Twin of `blip_torch/captioning.py`.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from blip_core.config.configuration import BlipConfig
from blip_core.config.model_constants import CLS_TOKEN_ID
from blip_core.generation.options import special_tokens
from blip_core.generation.prompts import prompt_rows
from blip_core.generation.sampling import check_sampling_seeds
from blip_core.modeling.limits import check_pairing as _check_pairing
from blip_core.modeling.outputs import BlipForConditionalGenerationModelOutput
from blip_tf.generation import TFGenerationMixin, empty_output
from blip_tf.generation import generate as decode
from blip_tf.modeling_utils import TFBlipPreTrainedModel, as_tensor, inference_function, pixel_signature
from blip_tf.models import as_numpy, batch_size_of, image_features, output_flags, prefixed
from blip_tf.text import TFBlipTextLMHeadModel
from blip_tf.vision import TFBlipVisionModel


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
        self.text_decoder.tie_weights(prefixed(untied, "text_decoder."))

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
        output_attentions, output_hidden_states, return_dict = output_flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        if input_ids is None:
            raise ValueError(
                "TFBlipForConditionalGeneration.call needs input_ids (the caption); use generate() to caption"
            )
        vision_outputs = image_features(
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
        images = batch_size_of(pixel_values, "pixel_values")
        rows = prompt_rows(
            as_numpy(input_ids), as_numpy(attention_mask), images, tokens.start, CLS_TOKEN_ID, text.sep_token_id
        )
        check_sampling_seeds(options.sampling_seeds, len(rows))
        for row in rows:  # a prompt too long fails here, before any kernel runs
            options.check_room(len(row), text.max_position_embeddings)
        if not rows:
            return empty_output(options)
        encode = inference_function(
            self,
            ("images", interpolate_pos_encoding, *pixel_values.shape[1:]),
            lambda: lambda pixels: image_features(self, pixels, interpolate_pos_encoding).last_hidden_state,
            [pixel_signature(pixel_values)],
        )
        image_embeds = encode(pixel_values)
        return decode(self.text_decoder, rows, image_embeds, None, options, tokens)
