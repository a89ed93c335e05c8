"""The option tables and checks shared by encoding (`text_batching`) and padding (`text_padding`): padding and
truncation option values, length limits, the padding side, and turning id lists into a BatchEncoding."""

from __future__ import annotations

from typing import Any

import numpy as np

from blip_core.processing.feature import BatchEncoding, to_framework

PADDING = {
    True: "longest",
    "longest": "longest",
    "max_length": "max_length",
    False: None,
    "do_not_pad": None,
    None: None,
}
TRUNCATION = {
    True: "longest_first",
    "longest_first": "longest_first",
    "only_first": "only_first",
    "only_second": "only_second",
    False: None,
    "do_not_truncate": None,
}
# The longest padded row a call may ask for (`padding="max_length"` with `max_length`, `pad_to_multiple_of`):
# a row is allocated at that length before anything else, so a mistyped 10**12 must be refused, not tried.
# BLIP's text models take 512 positions; a million tokens is far beyond any real use.
MAX_PADDED_LENGTH = 1 << 20

def check_length_options(padding: Any, max_length: Any, pad_to_multiple_of: Any, default_length: int = 0) -> None:
    """`max_length` and `pad_to_multiple_of` are positive integers; a padded length (`max_length`, else
    `default_length`, the tokenizer's `model_max_length`, when padding to it) stays within `MAX_PADDED_LENGTH`,
    checked before anything is allocated.

    Raises:
        ValueError: naming the option.
    """
    for name, value in (("max_length", max_length), ("pad_to_multiple_of", pad_to_multiple_of)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r:.40}")
    padded = [("pad_to_multiple_of", pad_to_multiple_of)]
    if hashable(padding) and PADDING.get(padding) == "max_length":
        padded.append(("max_length" if max_length is not None else "model_max_length", max_length or default_length))
    for name, value in padded:
        if value is not None and value > MAX_PADDED_LENGTH:
            raise ValueError(
                f"{name}={value} would pad every row to more than {MAX_PADDED_LENGTH} tokens (the limit; BLIP's "
                "text models take 512); pass a smaller value"
            )


def hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def check_side(side: str, name: str) -> str:
    if side not in ("right", "left"):
        raise ValueError(f"{name} must be 'right' or 'left', got {side!r}")
    return side


def make_batch(data: dict[str, Any], tensor_type: str | None, encodings: list[Any] | None = None) -> BatchEncoding:
    """A BatchEncoding of id lists, as tensors of `tensor_type` when asked (int64; int32 for TF).

    Raises:
        ValueError: rows of different lengths asked as one tensor.
    """
    if tensor_type is not None:
        data = {name: _tensor(name, value, tensor_type) for name, value in data.items()}
    return BatchEncoding(data, encodings=encodings)


def _tensor(name: str, rows: Any, tensor_type: str) -> Any:
    try:
        array = np.asarray(rows, dtype=np.int32 if tensor_type == "tf" else np.int64)
    except (ValueError, TypeError):
        lengths = sorted({len(row) if isinstance(row, (list, tuple)) else 1 for row in rows})
        raise ValueError(
            f"cannot make one tensor of {name!r}: sequences have lengths {lengths}; pass padding=True"
        ) from None
    return to_framework(array, tensor_type)
