"""Dict-like batches returned by the processors, with framework conversion.

Frameworks are imported only when a caller asks for their tensors, so that
`blip_core` stays importable without torch or tensorflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


class BatchEncoding(BatchFeature):
    """The tokenizer's output: `input_ids`, `attention_mask` (and `token_type_ids` if asked)."""
