"""The ViT image encoder (`BlipVisionModel`), REFERENCE §6.1.

Pre-norm blocks with a fused qkv projection, attention through
`scaled_dot_product_attention` (explicit softmax only when attentions are
asked for), and the pooled output normalised twice, as in `transformers`.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from blip_core.config.configuration import BlipVisionConfig
from blip_core.config.model_constants import num_positions, patch_grid
from blip_core.modeling.empty_batch import is_empty
from blip_core.modeling.empty_batch import vision_output as empty_vision_output
from blip_core.modeling.interpolation import bicubic_matrix
from blip_core.modeling.limits import check_pixel_shape, vision_tokens
from blip_core.modeling.outputs import BaseModelOutputWithPooling
from blip_torch.layers import Linear, attend, get_activation
from blip_torch.modeling_utils import BlipPreTrainedModel


class BlipVisionEmbeddings(nn.Module):
    def __init__(self, config: BlipVisionConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_size = config.patch_size
        self.class_embedding = nn.Parameter(torch.empty(1, 1, config.hidden_size))
        self.patch_embedding = nn.Conv2d(3, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size)
        self.position_embedding = nn.Parameter(
            torch.empty(1, num_positions(config.image_size, config.patch_size), config.hidden_size)
        )

    def init_own_weights(self, std: float) -> None:
        """The raw parameters `nn.init` cannot find by module type."""
        nn.init.trunc_normal_(self.position_embedding, std=std)
        nn.init.trunc_normal_(self.class_embedding, std=std)

    def interpolate_pos_encoding(self, height: int, width: int) -> torch.Tensor:
        """The position table resized bicubically to a (height, width) image's patch grid."""
        rows, cols = patch_grid(height, width, self.patch_size)
        table = self.position_embedding
        side = int(round((table.shape[1] - 1) ** 0.5))
        if (rows, cols) == (side, side):
            return table
        grid = table[0, 1:].reshape(side, side, -1)  # (S, S, D)
        row_matrix = torch.tensor(bicubic_matrix(side, rows)).to(grid)
        col_matrix = torch.tensor(bicubic_matrix(side, cols)).to(grid)
        resized = torch.einsum("rh,hwd,cw->rcd", row_matrix, grid, col_matrix)  # (R, C, D)
        return torch.cat([table[:, :1], resized.reshape(1, rows * cols, -1)], dim=1)

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        batch, _, height, width = pixel_values.shape
        vision_tokens(self.config, height, width, interpolate_pos_encoding)  # the image fits the position table
        patches = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))  # (B, D, R, C)
        patches = patches.flatten(2).transpose(1, 2)  # (B, R*C, D)
        tokens = torch.cat([self.class_embedding.expand(batch, 1, -1).to(patches.dtype), patches], dim=1)
        if interpolate_pos_encoding:
            positions = self.interpolate_pos_encoding(height, width)
        else:
            positions = self.position_embedding
        return tokens + positions.to(tokens.dtype)


class BlipAttention(nn.Module):
    def __init__(self, config: BlipVisionConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scale = self.head_dim**-0.5
        self.dropout = config.attention_dropout
        self.qkv = Linear(config.hidden_size, 3 * config.hidden_size)
        self.projection = Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False) -> tuple[torch.Tensor, Any]:
        batch, length, width = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, T, D)
        dropout = self.dropout if self.training else 0.0
        context, weights = attend(query, key, value, None, dropout, output_attentions, self.scale)  # (B, H, T, D)
        context = context.transpose(1, 2).reshape(batch, length, width)  # (B, T, H*D)
        return self.projection(context), weights


class BlipMLP(nn.Module):
    def __init__(self, config: BlipVisionConfig) -> None:
        super().__init__()
        self.activation_fn = get_activation(config.hidden_act)
        self.fc1 = Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(hidden_states)))


class BlipEncoderLayer(nn.Module):
    def __init__(self, config: BlipVisionConfig) -> None:
        super().__init__()
        self.self_attn = BlipAttention(config)
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = BlipMLP(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False) -> tuple[torch.Tensor, Any]:
        attended, weights = self.self_attn(self.layer_norm1(hidden_states), output_attentions)
        hidden_states = hidden_states + attended
        hidden_states = hidden_states + self.mlp(self.layer_norm2(hidden_states))
        return hidden_states, weights


class BlipEncoder(nn.Module):
    def __init__(self, config: BlipVisionConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(BlipEncoderLayer(config) for _ in range(config.num_hidden_layers))
        self.gradient_checkpointing = False

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple | None, tuple | None]:
        all_hidden = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                hidden_states, weights = checkpoint(layer, hidden_states, output_attentions, use_reentrant=False)
            else:
                hidden_states, weights = layer(hidden_states, output_attentions)
            if output_hidden_states:
                all_hidden += (hidden_states,)
            if output_attentions:
                all_attentions += (weights,)
        return hidden_states, all_hidden, all_attentions


class BlipVisionModel(BlipPreTrainedModel):
    """The BLIP image encoder (`transformers.BlipVisionModel`).

    >>> from blip_core import BlipVisionConfig
    >>> model = BlipVisionModel(BlipVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
    ...                                          intermediate_size=40, image_size=32, patch_size=16))
    >>> model(torch.zeros(1, 3, 32, 32)).last_hidden_state.shape
    torch.Size([1, 5, 32])
    """

    config_class = BlipVisionConfig

    def __init__(self, config: BlipVisionConfig) -> None:
        super().__init__(config)
        self.embeddings = BlipVisionEmbeddings(config)
        self.encoder = BlipEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> BaseModelOutputWithPooling | tuple:
        if pixel_values is None:
            raise ValueError("BlipVisionModel needs pixel_values of shape (batch, 3, height, width)")
        check_pixel_shape(tuple(pixel_values.shape))
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        if is_empty(pixel_values.shape[0]):  # 0 images: outputs of the right shapes, no kernel
            zeros = functools.partial(torch.zeros, dtype=self.dtype, device=self.device)
            output = empty_vision_output(
                self.config,
                tuple(pixel_values.shape),
                interpolate_pos_encoding,
                output_attentions,
                output_hidden_states,
                zeros,
            )
            return output if return_dict else output.to_tuple()
        hidden_states = self.embeddings(pixel_values, interpolate_pos_encoding)
        hidden_states, all_hidden, all_attentions = self.encoder(hidden_states, output_attentions, output_hidden_states)
        last_hidden_state = self.post_layernorm(hidden_states)
        pooled_output = self.post_layernorm(last_hidden_state[:, 0, :])  # normalised twice, as in transformers
        output = BaseModelOutputWithPooling(last_hidden_state, pooled_output, all_hidden, all_attentions)
        return output if return_dict else output.to_tuple()
