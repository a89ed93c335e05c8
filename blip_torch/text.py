"""The BERT text encoder/decoder with cross-attention (`BlipTextModel`, `BlipTextLMHeadModel`), REFERENCE §6.2.

Post-norm BERT layers (`text_layers.py`); self-attention is causal when the
*call* says `is_decoder`; cross-attention masks are applied (REFERENCE §0.1).
Attention runs through `scaled_dot_product_attention` with BLIP's additive -10000 masks.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from blip_core.config.configuration import BlipTextConfig
from blip_core.config.model_constants import IGNORE_INDEX
from blip_core.modeling.empty_batch import cache_entry_shapes, is_empty
from blip_core.modeling.empty_batch import text_output as empty_text_output
from blip_core.modeling.limits import check_text_shape
from blip_core.modeling.moved_names import forward_moved_names
from blip_core.modeling.outputs import BaseModelOutputWithPoolingAndCrossAttentions, CausalLMOutputWithCrossAttentions
from blip_torch.cache import KVCache
from blip_torch.input_checks import check_inputs, check_labels
from blip_torch.layers import additive_mask
from blip_torch.modeling_utils import BlipPreTrainedModel
from blip_torch.text_layers import BlipTextEmbeddings, BlipTextEncoder, BlipTextOnlyMLMHead, BlipTextPooler


def extended_attention_mask(
    attention_mask: torch.Tensor, length: int, past: int, is_decoder: bool, dtype: torch.dtype
) -> torch.Tensor:
    """BLIP's additive self-attention mask (B, 1, T, past+T): padding, and causality for decoders."""
    if attention_mask.dim() == 3:
        keep = attention_mask[:, None]
    elif is_decoder:
        positions = torch.arange(past + length, device=attention_mask.device)
        causal = positions[None, :] <= positions[past:, None]  # (T, past+T)
        keep = causal[None, None] * attention_mask[:, None, None, :]
    else:
        keep = attention_mask[:, None, None, :]
    return additive_mask(keep, dtype)


class BlipTextModel(BlipPreTrainedModel):
    """The BLIP text transformer (`transformers.BlipTextModel`); `is_decoder=True` makes it causal.

    >>> from blip_core import BlipTextConfig
    >>> model = BlipTextModel(BlipTextConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...                                      num_attention_heads=2, intermediate_size=20))
    >>> model(torch.tensor([[1, 5, 7]])).pooler_output.shape
    torch.Size([1, 16])
    """

    config_class = BlipTextConfig
    main_input_name = "input_ids"

    def __init__(self, config: BlipTextConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = BlipTextEmbeddings(config)
        self.encoder = BlipTextEncoder(config)
        self.pooler = BlipTextPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        is_decoder: bool = False,
    ) -> BaseModelOutputWithPoolingAndCrossAttentions | tuple:
        if head_mask is not None:
            raise ValueError("head_mask is not supported")
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        use_cache = (self.config.use_cache if use_cache is None else use_cache) and is_decoder
        if (input_ids is None) == (inputs_embeds is None and encoder_embeds is None):
            raise ValueError("pass exactly one of input_ids, inputs_embeds or encoder_embeds")
        cache = (
            past_key_values
            if past_key_values is not None
            else (KVCache(self.config.num_hidden_layers) if use_cache else None)
        )
        past = cache.length if cache is not None else 0
        first = input_ids if input_ids is not None else inputs_embeds if inputs_embeds is not None else encoder_embeds
        batch, length = check_text_shape(tuple(first.shape), input_ids is not None)
        check_inputs(input_ids, position_ids, batch, length, past, self.config, encoder_embeds is None)
        if is_empty(batch):
            output = self._empty_output(
                length, past, encoder_hidden_states, cache, use_cache, output_attentions, output_hidden_states
            )
            return output if return_dict else output.to_tuple()
        if encoder_embeds is not None:
            hidden_states = encoder_embeds
        else:
            hidden_states = self.embeddings(input_ids, position_ids, inputs_embeds, past)
        if attention_mask is None and (not is_decoder or length == 1):
            mask = None  # nothing to hide: no padding, and one query position needs no causal mask
        else:
            if attention_mask is None:
                attention_mask = torch.ones(batch, past + length, device=hidden_states.device)
            mask = extended_attention_mask(attention_mask, length, past, is_decoder, hidden_states.dtype)
        cross_mask = None
        if encoder_hidden_states is not None and encoder_attention_mask is not None:
            cross_mask = additive_mask(encoder_attention_mask[:, None, None, :], hidden_states.dtype)
        sequence_output, all_hidden, all_self, all_cross = self.encoder(
            hidden_states, mask, encoder_hidden_states, cross_mask, cache, output_attentions, output_hidden_states
        )
        if cache is not None:
            cache.advance(length)
        pooled = self.pooler(sequence_output) if self.pooler is not None else None
        output = BaseModelOutputWithPoolingAndCrossAttentions(
            sequence_output, pooled, all_hidden, cache if use_cache else None, all_self, all_cross
        )
        return output if return_dict else output.to_tuple()

    def _empty_output(
        self,
        length: int,
        past: int,
        encoder_hidden_states: Any,
        cache: KVCache | None,
        use_cache: bool,
        output_attentions: bool,
        output_hidden_states: bool,
    ) -> BaseModelOutputWithPoolingAndCrossAttentions:
        """0 texts: outputs (and cache entries) of the right shapes, without running a kernel."""
        encoder_length = None if encoder_hidden_states is None else encoder_hidden_states.shape[1]
        zeros = functools.partial(torch.zeros, dtype=self.dtype, device=self.device)
        if cache is not None:
            self_shape, cross_shape = cache_entry_shapes(self.config, length, encoder_length)
            for layer in range(self.config.num_hidden_layers):
                cache.update_self(layer, zeros(self_shape), zeros(self_shape))
                if cross_shape is not None and cache.cross_entries[layer] is None:
                    cache.cross_entries[layer] = (zeros(cross_shape), zeros(cross_shape))
            cache.advance(length)
        return empty_text_output(
            self.config,
            length,
            past,
            encoder_length,
            self.pooler is not None,
            output_attentions,
            output_hidden_states,
            cache if use_cache else None,
            zeros,
        )


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float, reduction: str) -> torch.Tensor:
    """Next-token cross-entropy: logits[:, :-1] against labels[:, 1:], -100 ignored."""
    shifted = logits[:, :-1].float()
    targets = labels[:, 1:].to(shifted.device)
    loss = nn.functional.cross_entropy(
        shifted.reshape(-1, shifted.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )
    return loss.view(logits.shape[0], -1).sum(1) if reduction == "none" else loss


class BlipTextLMHeadModel(BlipPreTrainedModel):
    """The BLIP text decoder with its LM head (`transformers.BlipTextLMHeadModel`).

    >>> from blip_core import BlipTextConfig
    >>> model = BlipTextLMHeadModel(BlipTextConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...                                            num_attention_heads=2, intermediate_size=20))
    >>> model(torch.tensor([[1, 5, 7]])).logits.shape
    torch.Size([1, 3, 50])
    """

    config_class = BlipTextConfig
    main_input_name = "input_ids"

    def __init__(self, config: BlipTextConfig) -> None:
        super().__init__(config)
        self.bert = BlipTextModel(config, add_pooling_layer=False)
        self.cls = BlipTextOnlyMLMHead(config)
        self.label_smoothing = config.label_smoothing
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.bert.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.bert.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.predictions.decoder

    def tie_weights(self, untied: frozenset[str] = frozenset()) -> None:
        predictions = self.cls.predictions
        predictions.decoder.bias = predictions.bias
        if self.config.tie_word_embeddings and "cls.predictions.decoder.weight" not in untied:
            predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def untied_names(self) -> frozenset[str]:
        if self.cls.predictions.decoder.weight is self.bert.embeddings.word_embeddings.weight:
            return frozenset()
        return frozenset({"cls.predictions.decoder.weight"})

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        return_logits: bool = False,
        is_decoder: bool = True,
        reduction: str = "mean",
    ) -> CausalLMOutputWithCrossAttentions | tuple | torch.Tensor:
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        if labels is not None:
            check_labels(labels, self.config, input_ids if input_ids is not None else inputs_embeds)
            use_cache = False
        outputs = self.bert(
            input_ids,
            attention_mask,
            position_ids,
            head_mask,
            inputs_embeds,
            None,
            encoder_hidden_states,
            encoder_attention_mask,
            past_key_values,
            use_cache,
            output_attentions,
            output_hidden_states,
            True,
            is_decoder,
        )
        sequence_output = outputs.last_hidden_state
        if is_empty(sequence_output.shape[0]):  # 0 texts: logits of the right shape, no kernel
            logits = sequence_output.new_zeros(*sequence_output.shape[:2], self.config.vocab_size)
        else:
            logits = self.cls(sequence_output)
        if return_logits:
            return logits[:, :-1].contiguous()
        loss = lm_loss(logits, labels, self.label_smoothing, reduction) if labels is not None else None
        output = CausalLMOutputWithCrossAttentions(
            loss, logits, outputs.past_key_values, outputs.hidden_states, outputs.attentions, outputs.cross_attentions
        )
        return output if return_dict else output.to_tuple()


# Names defined here before this file was split: old imports and whole-model pickles keep working.
__getattr__ = forward_moved_names(
    __name__,
    {
        "BlipTextAttention": "blip_torch.text_layers",
        "BlipTextIntermediate": "blip_torch.text_layers",
        "BlipTextLMPredictionHead": "blip_torch.text_layers",
        "BlipTextLayer": "blip_torch.text_layers",
        "BlipTextOutput": "blip_torch.text_layers",
        "BlipTextPredictionHeadTransform": "blip_torch.text_layers",
        "BlipTextSelfAttention": "blip_torch.text_layers",
        "BlipTextSelfOutput": "blip_torch.text_layers",
    },
)
