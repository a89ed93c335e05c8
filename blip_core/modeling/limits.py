"""The limits of the text and vision stacks, checked once here for both trees (REFERENCE §1.1, §7.3).

Each tree reads what it can off its tensors (a shape, a dtype, the smallest and
largest id) and asks these functions; the rules and the words of every error
live only here, so `blip_torch` and `blip_tf` refuse the same inputs with the
same `ValueError` (or `TypeError` for a wrong dtype), before any kernel runs.

Inside a TensorFlow graph only static facts are known: dtypes and static
lengths are checked there, id values and `position_ids` values are not (a
value the tree cannot read is passed as None and the check is skipped).
"""

from __future__ import annotations

from typing import Any

TRUNCATE_HINT = "truncate the text (processor(..., truncation=True, max_length={limit}))"


def check_ids_dtype(is_integer: bool, dtype_name: str, name: str = "input_ids") -> None:
    """Token ids (and position ids) must be integers: a float or bool tensor is a `TypeError`."""
    if not is_integer:
        raise TypeError(f"{name} must be integers, got {dtype_name}")


def check_token_ids(low: int | None, high: int | None, vocab_size: int, name: str = "input_ids") -> None:
    """Ids must lie in [0, vocab_size); `low`/`high` are None when unknown (empty, or inside a graph)."""
    if low is None or high is None:
        return
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"{name} must lie in [0, {vocab_size}) (the model's vocab_size), got values from {low} to {high}; "
            "after adding tokens to the tokenizer, call model.resize_token_embeddings(len(tokenizer))"
        )


def check_text_shape(shape: tuple, ids: bool) -> tuple[int | None, int | None]:
    """(batch, length) of `input_ids` (batch, length) or of embeddings (batch, length, width)."""
    name, rank = ("input_ids", 2) if ids else ("inputs_embeds", 3)
    if len(shape) != rank:
        expected = "(batch, length)" if ids else "(batch, length, hidden_size)"
        raise ValueError(f"{name} must have shape {expected}, got {shape}")
    return shape[0], shape[1]


def check_has_tokens(batch: int | None, length: int | None, name: str = "input_ids") -> None:
    """A non-empty batch of texts needs at least one token per row (an empty batch may have none)."""
    if length == 0 and batch != 0:
        raise ValueError(f"{name} has no tokens (shape ({batch}, 0)); every text needs at least one token")


def check_text_length(length: int | None, past: Any, max_positions: int, name: str = "input_ids") -> None:
    """`past` cached plus `length` new tokens must fit the position table (positions counted from 0).

    `length` is None, or `past` not an int, when unknown (inside a graph): nothing is checked then.
    """
    if length is None or not isinstance(past, int) or past + length <= max_positions:
        return
    cached = f" after {past} cached tokens" if past else ""
    raise ValueError(
        f"{name} has {length} tokens{cached}: a sequence of {past + length} tokens exceeds max_position_embeddings "
        f"({max_positions}) of the text model; " + TRUNCATE_HINT.format(limit=max(max_positions - past, 1))
    )


def check_position_ids(low: int | None, high: int | None, max_positions: int) -> None:
    """Explicit `position_ids` must index the position table."""
    if low is None or high is None:
        return
    if low < 0 or high >= max_positions:
        raise ValueError(
            f"position_ids must lie in [0, {max_positions}) (max_position_embeddings), got values from {low} to {high}"
        )


def check_prompt_room(prompt_length: int, max_positions: int) -> None:
    """A generation prompt (BOS included) must leave at least one position for a new token."""
    if prompt_length >= max_positions:
        raise ValueError(
            f"the prompt has {prompt_length} tokens (BOS included), but the text decoder has only "
            f"max_position_embeddings={max_positions} positions, leaving no room for a new token; "
            + TRUNCATE_HINT.format(limit=max_positions - 1)
        )


def check_max_length(max_length: int, prompt_length: int) -> None:
    """`max_length` counts the whole sequence: it must exceed the prompt (`transformers` raises too)."""
    if max_length <= prompt_length:
        raise ValueError(
            f"max_length={max_length} counts the whole sequence, but the prompt already has {prompt_length} "
            "tokens (BOS included); increase max_length or, better, set max_new_tokens"
        )


def check_pixel_shape(shape: tuple) -> None:
    """`pixel_values` must be (batch, 3, height, width)."""
    if len(shape) != 4 or shape[1] != 3:
        raise ValueError(f"pixel_values must have shape (batch, 3, height, width), got {tuple(shape)}")


def vision_tokens(config: Any, height: int, width: int, interpolate_pos_encoding: bool) -> int:
    """Tokens the vision stack makes of a (height, width) image (patches + class token), or the error
    that the image does not fit the position table without `interpolate_pos_encoding`."""
    from blip_core.config.model_constants import num_positions, patch_grid

    rows, cols = patch_grid(height, width, config.patch_size)
    positions = num_positions(config.image_size, config.patch_size)
    if not interpolate_pos_encoding and rows * cols + 1 != positions:
        raise ValueError(
            f"pixel_values of size {height}x{width} give {rows * cols} patches but the model was "
            f"trained at {config.image_size}x{config.image_size} ({positions - 1} patches); "
            "resize the images or pass interpolate_pos_encoding=True"
        )
    if rows * cols == 0:
        raise ValueError(
            f"pixel_values of size {height}x{width} are smaller than one {config.patch_size}x{config.patch_size} patch"
        )
    return rows * cols + 1


def check_loss_rows(what: str, *rows: int | None) -> None:
    """A loss is a mean over the batch: an empty batch (any of `rows` is 0) has none (it would be NaN).
    A row count is None when unknown (inside a graph): nothing is checked then."""
    if 0 in rows:
        raise ValueError(f"{what} was asked for an empty batch (0 rows); a loss needs at least one example")


def check_label_shape(labels: tuple, inputs: tuple, name: str = "input_ids") -> None:
    """Labels hold one target per input token: `labels` (batch, length) must equal the shape of `inputs`, the ids
    (or the first two axes of the embeddings) the decoder reads. Axes unknown inside a graph (None) are skipped."""
    inputs = tuple(inputs[:2])
    known = len(labels) == 2 and all(a is None or b is None or a == b for a, b in zip(labels, inputs, strict=True))
    if not known:
        raise ValueError(
            f"labels must have the shape of {name} {_shape(inputs)} (one target per token, -100 where no loss is "
            f"wanted), got {_shape(labels)}"
        )


def check_cross_attention(has_encoder_states: bool, is_decoder: bool) -> None:
    """Only a decoder text config (is_decoder=True) has the cross-attention that image states need."""
    if has_encoder_states and not is_decoder:
        raise ValueError("encoder_hidden_states given, but the text config has is_decoder=False (no cross-attention)")


def _shape(shape: tuple) -> str:
    """A shape as the trees print it: (2, 6), with None for an axis unknown inside a graph."""
    return str(tuple(None if size is None else int(size) for size in shape))


def check_pairing(images: int | None, texts: int | None) -> None:
    """Image i goes with text i (captioning, matching, questions): equal counts, or one image for all texts."""
    if images is not None and texts is not None and images != texts and images != 1:
        raise ValueError(
            f"image i is paired with text i: got {images} images and {texts} texts (give equal numbers, or one image)"
        )


def check_answers(questions: int | None, answers: int | None) -> None:
    """VQA training pairs question i with answer i (`decoder_input_ids` / `labels`)."""
    if questions is not None and answers is not None and questions != answers:
        raise ValueError(
            f"got {questions} questions and {answers} answers (decoder_input_ids / labels); "
            "give one answer per question"
        )
