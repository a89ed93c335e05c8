"""The framework-specific half of a pipeline: where the model runs, in which dtype, and its tensors.

`device` and `dtype` take what `transformers.pipeline` takes: an int (-1 for the CPU, n >= 0 for
accelerator n, falling back to the CPU when there is none, as `transformers` does), a string
("cpu", "cuda:1", "mps", or a TensorFlow device such as "/GPU:0"), a `torch.device`; a dtype
object, its name, or "auto" (the checkpoint's own dtype). Frameworks are imported here lazily.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from blip_core.modeling.devices import tf_device, torch_device

FRAMEWORKS = {"pt": "blip_torch", "tf": "blip_tf", "onnx": "blip_onnx"}
# Class-name prefix of each framework's twins.
CLASS_PREFIX = {"pt": "", "tf": "TF", "onnx": "Onnx"}


def choose_dtype(framework: str, dtype: Any, torch_dtype: Any) -> Any:
    """One dtype from `dtype=` and its older name `torch_dtype=`.

    PyTorch defaults to "auto" (the checkpoint's dtype), as `transformers.pipeline` does; TensorFlow
    to float32, as `transformers`' TensorFlow models load; ONNX exports run as exported.

    Raises:
        ValueError: both given, and different.
    """
    if dtype is not None and torch_dtype is not None and str(dtype) != str(torch_dtype):
        raise ValueError(f"got dtype={dtype!r} and torch_dtype={torch_dtype!r}: give one (torch_dtype is its old name)")
    chosen = dtype if dtype is not None else torch_dtype
    if chosen is None:
        return "auto" if framework == "pt" else None
    return chosen


@dataclass
class Runtime:
    """The framework-specific half of a pipeline: its tensors, its device, its model classes."""

    framework: str
    device: Any = None
    dtype: Any = None

    def __post_init__(self) -> None:
        if self.framework not in FRAMEWORKS:
            raise ValueError(f"framework must be 'pt', 'tf' or 'onnx', got {self.framework!r}")
        if self.framework == "onnx":
            self.device = _onnx_device(self.device)
            return
        self.device = torch_device(self.device) if self.framework == "pt" else tf_device(self.device)

    def model_class(self, class_name: str) -> Any:
        module = importlib.import_module(FRAMEWORKS[self.framework])
        return getattr(module, CLASS_PREFIX[self.framework] + class_name)

    def load(self, class_name: str, source: Any, options: dict[str, Any]) -> Any:
        """`class_name` (its TF twin in TensorFlow) from a folder or Hub id, on this device and dtype;
        an already loaded model is moved to the device (PyTorch), as `transformers` does."""
        if not isinstance(source, (str, os.PathLike)):
            if self.framework == "pt" and source.device != self.device:
                source.to(self.device)
            return source
        cls = self.model_class(class_name)
        if self.framework == "onnx":
            options = {key: value for key, value in options.items() if key != "device_map"}
            return cls.from_pretrained(source, dtype=self.dtype, **options)
        if self.framework == "pt":
            options = {"device": self.device, **options} if "device_map" not in options else options
            return cls.from_pretrained(source, torch_dtype=self.dtype, **options)
        options = {key: value for key, value in options.items() if key != "device_map"}
        with self.placement():
            return cls.from_pretrained(source, dtype=self.dtype, **options)

    def placement(self) -> Any:
        """A context that places TensorFlow work on this device (nothing for PyTorch)."""
        if self.framework == "tf" and self.device:
            import tensorflow as tf

            return tf.device(self.device)
        return _Nothing()

    def model_dtype(self, model: Any) -> Any:
        if self.framework == "pt":
            return next(model.parameters()).dtype
        return getattr(model, "dtype", "float32")  # Keras' dtype name; ONNX exports: "float32"

    def tensors(self, batch: dict[str, np.ndarray], model: Any) -> dict[str, Any]:
        """NumPy arrays as the model's inputs: torch tensors on its device and dtype, or NumPy for Keras and ONNX."""
        if self.framework in ("tf", "onnx"):
            return batch
        import torch

        dtype, device = next(model.parameters()).dtype, next(model.parameters()).device
        out = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in batch.items()}
        return {
            key: value.to(device, dtype) if value.is_floating_point() else value.to(device)
            for key, value in out.items()
        }

    def run(self, function: Any, **kwargs: Any) -> Any:
        """`function(**kwargs)` without gradients (PyTorch) or on the chosen device (TensorFlow)."""
        if self.framework == "onnx":
            return function(**kwargs)
        if self.framework == "tf":
            with self.placement():
                return function(**kwargs)
        import torch

        with torch.no_grad():
            return function(**kwargs)

    def framework_tensor(self, array: np.ndarray) -> Any:
        """A NumPy row as this framework's tensor (what `return_tensors=True` hands back)."""
        if self.framework == "onnx":
            return np.ascontiguousarray(array)
        if self.framework == "pt":
            import torch

            return torch.from_numpy(np.ascontiguousarray(array))
        import tensorflow as tf

        return tf.convert_to_tensor(array)


def _onnx_device(device: Any) -> str:
    """ONNX exports run on the CPU here (`blip_onnx.models.check_device`).

    Raises:
        ValueError: another device.
    """
    from blip_onnx.models import check_device

    check_device(device)
    return "cpu"


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def to_numpy(value: Any) -> np.ndarray:
    """A framework tensor (or array-like) as NumPy; half floats widen to float32."""
    if hasattr(value, "detach"):
        value = value.detach()
        return value.float().cpu().numpy() if value.is_floating_point() else value.cpu().numpy()
    array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    return array.astype(np.float32) if array.dtype.name in ("float16", "bfloat16") else array
