"""Input checks of the text stacks, read off TensorFlow tensors; twin of `blip_torch/input_checks.py`.

Inside a graph only static facts (dtypes, static shapes) are known; id values are checked eagerly only.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

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


def _value_range(tensor: tf.Tensor) -> tuple[int | None, int | None]:
    """(smallest, largest) value; (None, None) when empty or unknown (inside a graph)."""
    if not tf.executing_eagerly() or not tensor.shape.num_elements():
        return None, None
    return int(tf.reduce_min(tensor)), int(tf.reduce_max(tensor))


def _is_integer(tensor: tf.Tensor) -> bool:
    return tensor.dtype.is_integer


def check_inputs(
    input_ids: tf.Tensor | None,
    position_ids: tf.Tensor | None,
    batch: int | None,
    length: int | None,
    past: Any,
    config: BlipTextConfig,
    uses_positions: bool = True,
) -> None:
    """Every limit of the text stack (`blip_core.modeling.limits`): id dtype and range, tokens per row, the
    position table (explicit `position_ids`, or `past` + `length`). A clear error before any kernel.
    Inside a graph only dtypes and static lengths are checked; id values are not."""
    name = "input_ids" if input_ids is not None else "inputs_embeds"
    if input_ids is not None:
        check_ids_dtype(_is_integer(input_ids), input_ids.dtype.name)
        check_token_ids(*_value_range(input_ids), config.vocab_size)
    check_has_tokens(batch, length, name)
    if position_ids is not None:
        check_ids_dtype(_is_integer(position_ids), position_ids.dtype.name, "position_ids")
        check_position_ids(*_value_range(position_ids), config.max_position_embeddings)
    elif uses_positions:
        check_text_length(length, past, config.max_position_embeddings, name)


def check_labels_match(labels: tf.Tensor, inputs: tf.Tensor, name: str = "input_ids") -> None:
    """`labels` (batch, length) must have the shape of the ids the decoder reads (`inputs`, or its embeddings).
    Inside a graph only the static axes are compared."""
    check_label_shape(tuple(labels.shape), tuple(inputs.shape), name)


def check_labels(labels: tf.Tensor, config: BlipTextConfig, inputs: tf.Tensor | None = None) -> None:
    """Labels are token ids or -100 (ignored), one per token of `inputs` (when given), on a non-empty batch:
    a clear error before the loss kernel. Inside a graph only the dtype and static shapes are checked."""
    if inputs is not None:
        check_labels_match(labels, inputs)
    check_loss_rows("the language-modelling loss (labels)", labels.shape[0])
    check_ids_dtype(_is_integer(labels), labels.dtype.name, "labels")
    kept = tf.boolean_mask(labels, labels != IGNORE_INDEX) if tf.executing_eagerly() else labels
    check_token_ids(*_value_range(kept), config.vocab_size, "labels (other than -100)")
