"""Input checks of the text stacks, read off PyTorch tensors: the rules and messages are `blip_core.modeling.limits`."""

from __future__ import annotations

import torch

from blip_core.config.configuration import BlipTextConfig
from blip_core.config.model_constants import IGNORE_INDEX
from blip_core.modeling.limits import (
    check_has_tokens,
    check_ids_dtype,
    check_label_shape,
    check_loss_rows,
    check_position_ids,
    check_text_length,
    check_token_ids,
)
from blip_torch.layers import traced


def _value_range(tensor: torch.Tensor) -> tuple[int | None, int | None]:
    """(smallest, largest) value, (None, None) for an empty tensor or inside a tracer (`torch.export`,
    `torch.compile`: the values are not known there, and the exported graph is checked by its own caller)."""
    if traced() or not tensor.numel():
        return None, None
    return int(tensor.min()), int(tensor.max())


def _is_integer(tensor: torch.Tensor) -> bool:
    return not (tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool)


def check_inputs(
    input_ids: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    batch: int,
    length: int,
    past: int,
    config: BlipTextConfig,
    uses_positions: bool = True,
) -> None:
    """Every limit of the text stack (`blip_core.modeling.limits`): id dtype and range, tokens per row, the
    position table (explicit `position_ids`, or `past` + `length`). A clear error before any kernel."""
    name = "input_ids" if input_ids is not None else "inputs_embeds"
    if input_ids is not None:
        check_ids_dtype(_is_integer(input_ids), str(input_ids.dtype).replace("torch.", ""))
        check_token_ids(*_value_range(input_ids), config.vocab_size)
    check_has_tokens(batch, length, name)
    if position_ids is not None:
        check_ids_dtype(_is_integer(position_ids), str(position_ids.dtype).replace("torch.", ""), "position_ids")
        check_position_ids(*_value_range(position_ids), config.max_position_embeddings)
    elif uses_positions:
        check_text_length(length, past, config.max_position_embeddings, name)


def check_labels_match(labels: torch.Tensor, inputs: torch.Tensor, name: str = "input_ids") -> None:
    """`labels` (batch, length) must have the shape of the ids the decoder reads (`inputs`, or its embeddings)."""
    check_label_shape(tuple(labels.shape), tuple(inputs.shape), name)


def check_labels(labels: torch.Tensor, config: BlipTextConfig, inputs: torch.Tensor | None = None) -> None:
    """Labels are token ids or -100 (ignored), one per token of `inputs` (when given), on a non-empty batch:
    a clear error before the loss kernel."""
    if inputs is not None:
        check_labels_match(labels, inputs)
    check_loss_rows("the language-modelling loss (labels)", labels.shape[0])
    check_ids_dtype(_is_integer(labels), str(labels.dtype).replace("torch.", ""), "labels")
    check_token_ids(*_value_range(labels[labels != IGNORE_INDEX]), config.vocab_size, "labels (other than -100)")
