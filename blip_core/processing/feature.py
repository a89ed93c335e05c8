"""Dict-like batches returned by the processors, with framework conversion.

Frameworks are imported only when a caller asks for their tensors, so that
`blip_core` stays importable without torch or tensorflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

TENSOR_TYPES = (None, "np", "pt", "tf")


def check_tensor_type(return_tensors: Any) -> str | None:
    """Validate a `return_tensors` argument; accept the enum-like objects of `transformers` too."""
    value = getattr(return_tensors, "value", return_tensors)
    if value not in TENSOR_TYPES:
        raise ValueError(f"return_tensors must be one of None, 'np', 'pt' or 'tf', got {return_tensors!r}")
    return value


def to_framework(array: np.ndarray, tensor_type: str | None) -> Any:
    """Convert a stacked NumPy array to the requested framework's tensor."""
    if tensor_type in (None, "np"):
        return array
    if tensor_type == "pt":
        import torch

        return torch.from_numpy(np.ascontiguousarray(array))
    import tensorflow as tf

    return tf.convert_to_tensor(array)


def _stack(key: str, value: np.ndarray | list) -> np.ndarray:
    try:
        return np.asarray(value)
    except ValueError:
        shapes = sorted({tuple(np.shape(item)) for item in value})
        raise ValueError(
            f"cannot make one tensor of {key!r}: its items have different shapes {shapes}; "
            "resize images to one size or pad the text"
        ) from None


def _is_floating(value: Any) -> bool:
    return bool(getattr(value, "is_floating_point", lambda: False)())


def _parse_to_args(args: tuple, kwargs: dict) -> tuple[Any, Any]:
    """Split `.to(...)` arguments into (device, dtype) the way `torch.Tensor.to` reads them."""
    import torch

    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for arg in args:
        if isinstance(arg, torch.dtype):
            dtype = arg
        elif isinstance(arg, (str, int, torch.device)):
            device = arg
        else:
            raise TypeError(f"to() takes a device and/or a torch dtype, got {arg!r}")
    return device, dtype


class BatchFeature(dict):
    """A dict of model inputs with attribute access (`batch.pixel_values`).

    `.to(device, dtype)` moves torch tensors and casts only the floating ones,
    so integer ids stay integers.

    >>> batch = BatchFeature({"pixel_values": np.zeros((1, 3, 4, 4), np.float32)})
    >>> batch.pixel_values.shape
    (1, 3, 4, 4)
    """

    def __init__(self, data: Mapping[str, Any] | None = None, tensor_type: str | None = None) -> None:
        super().__init__()
        tensor_type = check_tensor_type(tensor_type)
        for key, value in (data or {}).items():
            if tensor_type is not None and isinstance(value, (np.ndarray, list)):
                value = to_framework(_stack(key, value), tensor_type)
            self[key] = value

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}; it has {list(self)}") from None

    def __getstate__(self) -> dict:
        return dict(self)

    def __setstate__(self, state: dict) -> None:
        self.update(state)

    def to(self, *args: Any, **kwargs: Any) -> BatchFeature:
        """Move torch tensors to a device; cast floating ones to `dtype` (a new object)."""
        device, dtype = _parse_to_args(args, kwargs)
        moved = {}
        for key, value in self.items():
            if hasattr(value, "to") and hasattr(value, "is_floating_point"):
                cast = dtype if _is_floating(value) else None
                value = value.to(device=device, dtype=cast) if cast is not None else value.to(device=device)
            moved[key] = value
        return type(self)(moved)

    def convert_to_tensors(self, tensor_type: str | None) -> BatchFeature:
        return type(self)(dict(self), tensor_type=tensor_type)


class CharSpan(NamedTuple):
    """Characters [start, end) of the original text."""

    start: int
    end: int


class TokenSpan(NamedTuple):
    """Tokens [start, end) of an encoding."""

    start: int
    end: int


class BatchEncoding(BatchFeature):
    """The tokenizer's output: `input_ids`, `attention_mask` (and the other columns asked for).

    From the tokenizer it keeps the backend's encodings, one per row, for `transformers`' alignment methods
    (`word_ids`, `tokens`, `sequence_ids`, `token_to_word`, `char_to_token`, ...); `batch[i]` is row i's
    `tokenizers.Encoding`.

    >>> batch = BatchEncoding({"input_ids": [[101, 102]]})
    >>> batch.is_fast
    False
    """

    def __init__(
        self, data: Mapping[str, Any] | None = None, tensor_type: str | None = None, encodings: list | None = None
    ) -> None:
        super().__init__(data, tensor_type)
        self._encodings = encodings

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(key)
        if isinstance(key, int) and self._encodings is not None:
            return self._encodings[key]
        if isinstance(key, slice):
            return {name: value[key] for name, value in self.items()}
        raise KeyError(f"{key!r}: index a BatchEncoding by column name (or row number, for a tokenizer's output)")

    def __getstate__(self) -> dict:
        return {"data": dict(self), "encodings": self._encodings}

    def __setstate__(self, state: dict) -> None:
        self.update(state.get("data", {}))
        self._encodings = state.get("encodings")

    def to(self, *args: Any, **kwargs: Any) -> BatchEncoding:
        moved = super().to(*args, **kwargs)
        moved._encodings = self._encodings
        return moved

    def convert_to_tensors(self, tensor_type: str | None) -> BatchEncoding:
        return type(self)(dict(self), tensor_type=tensor_type, encodings=self._encodings)

    # -- alignment, from the backend's encodings (transformers' BatchEncoding methods) ----------

    @property
    def encodings(self) -> list | None:
        return self._encodings

    @property
    def is_fast(self) -> bool:
        return self._encodings is not None

    @property
    def n_sequences(self) -> int | None:
        return None if self._encodings is None else self._encodings[0].n_sequences

    def _row(self, batch_index: int, method: str) -> Any:
        if self._encodings is None:
            raise ValueError(f"{method}() is not available: this BatchEncoding was not made by a tokenizer call")
        return self._encodings[batch_index]

    def _locate(self, batch_or_index: int, index: int | None, method: str) -> tuple[Any, int]:
        """(row encoding, index): one argument is an index into row 0, two are (row, index)."""
        batch_index, index = (0, batch_or_index) if index is None else (batch_or_index, index)
        return self._row(batch_index, method), index

    def tokens(self, batch_index: int = 0) -> list[str]:
        return self._row(batch_index, "tokens").tokens

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._row(batch_index, "word_ids").word_ids

    def words(self, batch_index: int = 0) -> list[int | None]:
        return self.word_ids(batch_index)

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._row(batch_index, "sequence_ids").sequence_ids

    def token_to_sequence(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        row, index = self._locate(batch_or_token_index, token_index, "token_to_sequence")
        return row.token_to_sequence(index if index >= 0 else len(row.ids) + index)

    def token_to_word(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        row, index = self._locate(batch_or_token_index, token_index, "token_to_word")
        return row.token_to_word(index if index >= 0 else len(row.ids) + index)

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None) -> CharSpan | None:
        row, index = self._locate(batch_or_token_index, token_index, "token_to_chars")
        span = row.token_to_chars(index if index >= 0 else len(row.ids) + index)
        return None if span is None else CharSpan(*span)

    def word_to_tokens(
        self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0
    ) -> TokenSpan | None:
        row, index = self._locate(batch_or_word_index, word_index, "word_to_tokens")
        span = row.word_to_tokens(index, sequence_index)
        return None if span is None else TokenSpan(*span)

    def word_to_chars(
        self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0
    ) -> CharSpan | None:
        row, index = self._locate(batch_or_word_index, word_index, "word_to_chars")
        span = row.word_to_chars(index, sequence_index)
        return None if span is None else CharSpan(*span)

    def char_to_token(self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0) -> Any:
        row, index = self._locate(batch_or_char_index, char_index, "char_to_token")
        return row.char_to_token(index, sequence_index)

    def char_to_word(self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0) -> Any:
        row, index = self._locate(batch_or_char_index, char_index, "char_to_word")
        return row.char_to_word(index, sequence_index)
