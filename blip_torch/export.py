"""Export-ready graphs of a loaded BLIP model: pure functions of tensors, no Python state between calls.

What `torch.export.export`, `torch.onnx.export`, ExecuTorch, AOTInductor and TorchServe need is a module whose
forward takes and returns tensors only. Decoding is split the way that makes a token's cost independent of the
text so far (the design of `blip_torch.decoding`, with its cache made explicit):

- `VisionEncoderGraph`: pixel_values (B, 3, S, S) float -> image_embeds (B, T, D_vision).
- `CrossKeysValuesGraph`: the decoder's cross-attention keys and values of every layer, computed once from the
  image (captioning) or question (VQA) states: encoder_hidden_states (B, T, D) -> cross_keys, cross_values
  (lists of L tensors (B, H, T, d)).
- `DecoderGraph`: one call of the text decoder, for a prompt (past length 0) or one new token per row, for B
  images (or questions) of G rows each (their beams or returned sequences): input_ids, position_ids,
  attention_mask (B, G, S) int64 (the mask 0/1 of the new tokens), past_attention_mask (B, G, P) int64 (of the
  cached ones), past_keys/past_values (lists of L tensors (B, G, H, P, d)), cross_keys/cross_values (lists of L
  tensors (B, H, T, d)) of `CrossKeysValuesGraph`, encoder_attention_mask (B, T) int64 -> logits (B, G, V)
  float32 of the last position, present_keys/present_values (lists of L tensors (B, G, H, P + S, d)). An image's
  rows share its cross keys/values (folded into the query axis, never copied). Images and rows per image are
  separate axes, and the two masks are separate inputs, so that every axis is an export dimension of its own (no
  axis is a quotient or a sum of others). The cache is one tensor per layer, not one stacked tensor: a stacked
  cache costs a split and a concatenation of all of it at every step (measured: 27% of a beam-search step).
- `QuestionEncoderGraph` (VQA): input_ids, attention_mask (B, Lq), image_embeds -> question_embeds (B, Lq, D).
- `ImageTextMatchingGraph`, `ImageFeaturesGraph`, `TextFeaturesGraph` (retrieval): the ITM logits (B, 2) of
  (text, image) pairs, and the L2-normalised ITC embeddings (B, E) of images and of texts.

The graphs compute what `BlipTextLMHeadModel` and friends compute in eval mode (the same parameters; attention
written as its three operations with BLIP's additive -10000 masks), in float32; `tests` compare them with the
eager model and `blip_conversion.onnx_export` checks every exported file against them.
"""

from __future__ import annotations

import torch
from torch import nn

from blip_core.config.model_constants import MASK_FILL_VALUE


def _linear(layer: nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    """The plain product (the CPU fast paths of `blip_torch.layers.Linear` call kernels no exporter knows)."""
    return nn.functional.linear(hidden, layer.weight, layer.bias)


def _norm(layer: nn.LayerNorm, hidden: torch.Tensor) -> torch.Tensor:
    return nn.functional.layer_norm(hidden, layer.normalized_shape, layer.weight, layer.bias, layer.eps)


def _heads(states: torch.Tensor, heads: int) -> torch.Tensor:
    """(N, T, H*d) -> (N, H, T, d)."""
    batch, length, width = states.shape
    return states.reshape(batch, length, heads, width // heads).transpose(1, 2)


def _merge(context: torch.Tensor) -> torch.Tensor:
    """(N, H, T, d) -> (N, T, H*d)."""
    batch, heads, length, size = context.shape
    return context.transpose(1, 2).reshape(batch, length, heads * size)


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v over the last two axes; `mask` is additive and broadcasts."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * (query.shape[-1] ** -0.5)
    return torch.matmul(torch.softmax(scores + mask, dim=-1), value)


def _additive(keep: torch.Tensor) -> torch.Tensor:
    """A 0/1 (or bool) keep-mask as BLIP's additive float32 mask: 0 kept, -10000 hidden."""
    return (1.0 - keep.to(torch.float32)) * MASK_FILL_VALUE


def _text_layers(text_model: nn.Module) -> list[nn.Module]:
    return list(text_model.encoder.layer)


class VisionEncoderGraph(nn.Module):
    """pixel_values (B, 3, S, S) float32 -> image_embeds (B, T, D): the vision model's last hidden state."""

    def __init__(self, vision_model: nn.Module) -> None:
        super().__init__()
        self.vision_model = vision_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values=pixel_values, return_dict=True).last_hidden_state


class CrossKeysValuesGraph(nn.Module):
    """encoder_hidden_states (B, T, D) -> (cross_keys, cross_values), each (L, B, H, T, d): every decoder layer's
    cross-attention keys/values, computed once per image (or question) for the whole decoding."""

    def __init__(self, text_decoder: nn.Module) -> None:
        super().__init__()
        self.text_decoder = text_decoder
        self.heads = text_decoder.config.num_attention_heads

    def forward(self, encoder_hidden_states: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        keys, values = [], []
        for layer in _text_layers(self.text_decoder.bert):
            cross = layer.crossattention.self
            keys.append(_heads(_linear(cross.key, encoder_hidden_states), self.heads))
            values.append(_heads(_linear(cross.value, encoder_hidden_states), self.heads))
        return keys, values


class DecoderGraph(nn.Module):
    """One call of the text decoder with its self-attention cache as tensors (module docstring for the shapes)."""

    def __init__(self, text_decoder: nn.Module) -> None:
        super().__init__()
        self.text_decoder = text_decoder
        self.heads = text_decoder.config.num_attention_heads

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        past_attention_mask: torch.Tensor,
        past_keys: list[torch.Tensor],
        past_values: list[torch.Tensor],
        cross_keys: list[torch.Tensor],
        cross_values: list[torch.Tensor],
        encoder_attention_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        images, group, length = input_ids.shape
        past = past_keys[0].shape[-2]
        bert = self.text_decoder.bert
        embeddings = bert.embeddings
        hidden = embeddings.word_embeddings.weight[input_ids] + embeddings.position_embeddings.weight[position_ids]
        hidden = _norm(embeddings.LayerNorm, hidden.flatten(0, 1))  # (N, S, D), N = B * G rows
        # Query i (at cache position past + i) sees keys up to its own position, where the row is not padding.
        key_positions = torch.arange(past + length, device=input_ids.device)
        query_positions = torch.arange(length, device=input_ids.device) + past
        causal = key_positions[None, :] <= query_positions[:, None]  # (S, P + S)
        keep = torch.cat([past_attention_mask, attention_mask], dim=2).flatten(0, 1) > 0  # (N, P + S)
        self_mask = _additive(causal[None, None] & keep[:, None, None, :])  # (N, 1, S, P + S)
        cross_mask = _additive(encoder_attention_mask)[:, None, None, :]  # (B, 1, 1, T)
        presents_k, presents_v = [], []
        for index, layer in enumerate(_text_layers(bert)):
            attention = layer.attention.self
            query = _heads(_linear(attention.query, hidden), self.heads)
            new_key = _heads(_linear(attention.key, hidden), self.heads).unflatten(0, (images, group))
            new_value = _heads(_linear(attention.value, hidden), self.heads).unflatten(0, (images, group))
            key = torch.cat([past_keys[index], new_key], dim=3)  # (B, G, H, P + S, d)
            value = torch.cat([past_values[index], new_value], dim=3)
            presents_k.append(key)
            presents_v.append(value)
            context = _attend(query, key.flatten(0, 1), value.flatten(0, 1), self_mask)
            hidden = self._residual(layer.attention.output, _merge(context), hidden)
            cross = layer.crossattention.self
            query = _heads(_linear(cross.query, hidden), self.heads)  # (N, H, S, d)
            # An image's G rows become G * S query positions of one row (B, H, G * S, d), as `layers.attend` does:
            # the image's keys/values are never copied per row.
            folded = query.unflatten(0, (images, group)).transpose(1, 2).flatten(2, 3)
            context = _attend(folded, cross_keys[index], cross_values[index], cross_mask)
            context = context.unflatten(2, (group, length)).transpose(1, 2).flatten(0, 1)  # (N, H, S, d)
            hidden = self._residual(layer.crossattention.output, _merge(context), hidden)
            inner = layer.intermediate.intermediate_act_fn(_linear(layer.intermediate.dense, hidden))
            hidden = _norm(layer.output.LayerNorm, _linear(layer.output.dense, inner) + hidden)
        predictions = self.text_decoder.cls.predictions
        transform = predictions.transform
        last = hidden[:, -1]
        last = _norm(transform.LayerNorm, transform.transform_act_fn(_linear(transform.dense, last)))
        logits = _linear(predictions.decoder, last).unflatten(0, (images, group))
        return logits, presents_k, presents_v

    @staticmethod
    def _residual(output: nn.Module, context: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        return _norm(output.LayerNorm, _linear(output.dense, context) + hidden)


class QuestionEncoderGraph(nn.Module):
    """VQA: input_ids, attention_mask (B, Lq) int64, image_embeds (B, T, D) -> question_embeds (B, Lq, D_text)."""

    def __init__(self, text_encoder: nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image_embeds: torch.Tensor
    ) -> torch.Tensor:
        return self.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds, return_dict=True
        ).last_hidden_state


class ImageTextMatchingGraph(nn.Module):
    """ITM: input_ids, attention_mask (B, L) int64, image_embeds (B, T, D) -> itm_logits (B, 2) float32
    (`forward(use_itm_head=True).itm_score`)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text_encoder, self.itm_head = model.text_encoder, model.itm_head

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image_embeds: torch.Tensor
    ) -> torch.Tensor:
        states = self.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds, return_dict=True
        ).last_hidden_state
        return _linear(self.itm_head, states[:, 0])


class ImageFeaturesGraph(nn.Module):
    """Retrieval: pixel_values (B, 3, S, S) -> (image_embeds (B, T, D), image_features (B, E) L2-normalised ITC)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.vision_model, self.vision_proj = model.vision_model, model.vision_proj

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image_embeds = self.vision_model(pixel_values=pixel_values, return_dict=True).last_hidden_state
        features = nn.functional.normalize(_linear(self.vision_proj, image_embeds[:, 0]), dim=-1)
        return image_embeds, features


class TextFeaturesGraph(nn.Module):
    """Retrieval: input_ids, attention_mask (B, L) int64 -> text_features (B, E) L2-normalised ITC embeddings."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text_encoder, self.text_proj = model.text_encoder, model.text_proj

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return nn.functional.normalize(_linear(self.text_proj, states.last_hidden_state[:, 0]), dim=-1)
