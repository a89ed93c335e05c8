"""The layers of the BERT text encoder/decoder (REFERENCE §6.2): embeddings, self- and cross-attention,
the post-norm output blocks, the layer and the encoder stack, the pooler and the LM prediction head.
Attention runs through `scaled_dot_product_attention` with BLIP's additive -10000 masks; the models that
assemble these layers are in `text.py`. Twin of `blip_tf/text_layers.py`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from blip_core.config.configuration import BlipTextConfig
from blip_torch.cache import KVCache
from blip_torch.layers import Linear, attend, get_activation


class BlipTextEmbeddings(nn.Module):
    def __init__(self, config: BlipTextConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values_length: int = 0,
    ) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        length = inputs_embeds.shape[1]
        if position_ids is None:
            position_ids = torch.arange(
                past_key_values_length, past_key_values_length + length, device=inputs_embeds.device
            )[None]
        embeddings = inputs_embeds + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))


class BlipTextSelfAttention(nn.Module):
    def __init__(self, config: BlipTextConfig, is_cross_attention: bool) -> None:
        super().__init__()
        self.is_cross_attention = is_cross_attention
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        key_width = config.encoder_hidden_size if is_cross_attention else config.hidden_size
        self.query = Linear(config.hidden_size, config.hidden_size)
        self.key = Linear(key_width, config.hidden_size)
        self.value = Linear(key_width, config.hidden_size)
        self.dropout = config.attention_probs_dropout_prob

    def _heads(self, states: torch.Tensor) -> torch.Tensor:
        batch, length, _ = states.shape
        return states.view(batch, length, self.num_attention_heads, self.attention_head_size).transpose(
            1, 2
        )  # (B, H, T, D)

    def _keys_values(self, hidden_states: torch.Tensor, encoder_hidden_states: Any, cache: Any, layer: int) -> tuple:
        if not self.is_cross_attention:
            key, value = self._heads(self.key(hidden_states)), self._heads(self.value(hidden_states))
            return cache.update_self(layer, key, value) if cache is not None else (key, value)
        if cache is not None and cache.cross_entries[layer] is not None:
            return cache.cross_entries[layer]
        key, value = self._heads(self.key(encoder_hidden_states)), self._heads(self.value(encoder_hidden_states))
        if cache is not None:  # stored contiguous: attention would otherwise copy them at every step
            key, value = key.contiguous(), value.contiguous()
            cache.cross_entries[layer] = (key, value)
        return key, value

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, Any]:
        query = self._heads(self.query(hidden_states))
        key, value = self._keys_values(hidden_states, encoder_hidden_states, cache, layer)
        group = query.shape[0] // key.shape[0]  # rows sharing one cross-attention entry (beams)
        if group > 1 and output_attentions:
            key, value = key.repeat_interleave(group, 0), value.repeat_interleave(group, 0)
            attention_mask = None if attention_mask is None else attention_mask.repeat_interleave(group, 0)
            group = 1
        dropout = self.dropout if self.training else 0.0
        context, weights = attend(query, key, value, attention_mask, dropout, output_attentions, group=group)
        batch, heads, length, size = query.shape
        context = context.transpose(1, 2).reshape(batch, length, heads * size)  # (B, T, H*D)
        return context, weights


class BlipTextSelfOutput(nn.Module):
    def __init__(self, config: BlipTextConfig) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BlipTextAttention(nn.Module):
    def __init__(self, config: BlipTextConfig, is_cross_attention: bool = False) -> None:
        super().__init__()
        self.self = BlipTextSelfAttention(config, is_cross_attention)
        self.output = BlipTextSelfOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: Any = None,
        encoder_hidden_states: Any = None,
        cache: Any = None,
        layer: int = 0,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, Any]:
        context, weights = self.self(
            hidden_states, attention_mask, encoder_hidden_states, cache, layer, output_attentions
        )
        return self.output(context, hidden_states), weights


class BlipTextIntermediate(nn.Module):
    def __init__(self, config: BlipTextConfig) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = get_activation(config.hidden_act)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class BlipTextOutput(nn.Module):
    def __init__(self, config: BlipTextConfig) -> None:
        super().__init__()
        self.dense = Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BlipTextLayer(nn.Module):
    def __init__(self, config: BlipTextConfig, layer_num: int) -> None:
        super().__init__()
        self.layer_num = layer_num
        self.attention = BlipTextAttention(config)
        if config.is_decoder:
            self.crossattention = BlipTextAttention(config, is_cross_attention=True)
        self.intermediate = BlipTextIntermediate(config)
        self.output = BlipTextOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: Any,
        encoder_hidden_states: Any,
        encoder_attention_mask: Any,
        cache: Any,
        output_attentions: bool,
    ) -> tuple[torch.Tensor, Any, Any]:
        hidden_states, self_weights = self.attention(
            hidden_states, attention_mask, None, cache, self.layer_num, output_attentions
        )
        cross_weights = None
        if encoder_hidden_states is not None:
            if not hasattr(self, "crossattention"):
                raise ValueError(
                    "encoder_hidden_states given, but the text config has is_decoder=False (no cross-attention)"
                )
            hidden_states, cross_weights = self.crossattention(
                hidden_states, encoder_attention_mask, encoder_hidden_states, cache, self.layer_num, output_attentions
            )
        hidden_states = self.output(self.intermediate(hidden_states), hidden_states)
        return hidden_states, self_weights, cross_weights


class BlipTextEncoder(nn.Module):
    def __init__(self, config: BlipTextConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BlipTextLayer(config, i) for i in range(config.num_hidden_layers))
        self.gradient_checkpointing = False

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: Any,
        encoder_hidden_states: Any,
        encoder_attention_mask: Any,
        cache: Any,
        output_attentions: bool,
        output_hidden_states: bool,
    ) -> tuple:
        all_hidden = (hidden_states,) if output_hidden_states else None
        all_self = () if output_attentions else None
        all_cross = () if output_attentions and encoder_hidden_states is not None else None
        arguments = (attention_mask, encoder_hidden_states, encoder_attention_mask, cache, output_attentions)
        for layer in self.layer:
            if self.gradient_checkpointing and self.training and cache is None:
                hidden_states, self_weights, cross_weights = checkpoint(
                    layer, hidden_states, *arguments, use_reentrant=False
                )
            else:
                hidden_states, self_weights, cross_weights = layer(hidden_states, *arguments)
            if output_hidden_states:
                all_hidden += (hidden_states,)
            if output_attentions:
                all_self += (self_weights,)
                if all_cross is not None:
                    all_cross += (cross_weights,)
        return hidden_states, all_hidden, all_self, all_cross


class BlipTextPooler(nn.Module):
    def __init__(self, config: BlipTextConfig) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


class BlipTextPredictionHeadTransform(nn.Module):
    def __init__(self, config: BlipTextConfig) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = get_activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BlipTextLMPredictionHead(nn.Module):
    def __init__(self, config: BlipTextConfig) -> None:
        super().__init__()
        self.transform = BlipTextPredictionHeadTransform(config)
        self.decoder = Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias  # one parameter under both names, as in transformers

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states))


class BlipTextOnlyMLMHead(nn.Module):
    def __init__(self, config: BlipTextConfig) -> None:
        super().__init__()
        self.predictions = BlipTextLMPredictionHead(config)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.predictions(sequence_output)
