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

FRAMEWORKS = {"pt": "blip_torch", "tf": "blip_tf"}


def torch_device(device: Any) -> Any:
    """`device` as `transformers`' PyTorch pipelines read it (None means accelerator 0 when present).

    Raises:
        ValueError: a string torch does not know as a device.
    """
    import torch

    if device is None:
        device = 0
    if isinstance(device, str):
        try:
            device = torch.device(device)
        except RuntimeError as err:
            raise ValueError(f"device {device!r} is not a torch device: {err}") from None
    if isinstance(device, torch.device):
        return _present(device)
    if isinstance(device, bool) or not isinstance(device, int):
        raise ValueError(f"device must be an int, a string or a torch.device, got {device!r}")
    if device < 0:
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device(f"cuda:{device}")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device(f"mps:{device}")
    return torch.device("cpu")


def _present(device: Any) -> Any:
    """A named torch device, checked to exist here (torch itself fails later, deep inside `.to()`)."""
    import torch

    checks = {
        "cuda": lambda: torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
        "mps": lambda: getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    }
    if device.type in checks and not checks[device.type]():
        raise ValueError(
            f"device {str(device)!r} is not available to this torch ({torch.__version__}); "
            "use device='cpu' (or -1), or an accelerator this machine has"
        )
    return device


def tf_device(device: Any) -> str | None:
    """`device` as a TensorFlow device name; None leaves placement to TensorFlow.

    Raises:
        ValueError: a value that names no device.
    """
    if device is None:
        return None
    if isinstance(device, bool):
        raise ValueError(f"device must be an int, a string or a device object, got {device!r}")
    if isinstance(device, int):
        if device < 0:
            return "/CPU:0"
        import tensorflow as tf

        return f"/GPU:{device}" if tf.config.list_logical_devices("GPU") else "/CPU:0"
    text = str(device)  # a torch.device reads as "cuda:0" / "cpu"
    if text.startswith("/"):
        return _tf_present(text)
    kind, _, index = text.partition(":")
    if kind.lower() == "cpu":
        return "/CPU:0"
    if kind.lower() in ("cuda", "gpu"):
        return _tf_present(f"/GPU:{index or 0}")
    raise ValueError(f"device {device!r} is not a TensorFlow device: use 'cpu', 'cuda:N', '/GPU:N' or an int")


def _tf_present(name: str) -> str:
    """A TensorFlow device name, checked to exist (TensorFlow would silently place the work elsewhere)."""
    import tensorflow as tf

    kind, _, index = name.strip("/").upper().rpartition("DEVICE:")[2].partition(":")
    if kind in ("GPU", "TPU") and not any(
        device.name.upper().endswith(f"{kind}:{index or 0}") for device in tf.config.list_logical_devices(kind)
    ):
        raise ValueError(
            f"device {name!r} is not available to this TensorFlow ({tf.__version__}); "
            "use device='cpu' (or -1), or a device tf.config.list_logical_devices() lists"
        )
    return name


def choose_dtype(framework: str, dtype: Any, torch_dtype: Any) -> Any:
    """One dtype from `dtype=` and its older name `torch_dtype=`.

    PyTorch defaults to "auto" (the checkpoint's dtype), as `transformers.pipeline` does; TensorFlow
    to float32, as `transformers`' TensorFlow models load.

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
            raise ValueError(f"framework must be 'pt' or 'tf', got {self.framework!r}")
        self.device = torch_device(self.device) if self.framework == "pt" else tf_device(self.device)

    def model_class(self, class_name: str) -> Any:
        module = importlib.import_module(FRAMEWORKS[self.framework])
        return getattr(module, class_name if self.framework == "pt" else "TF" + class_name)

    def load(self, class_name: str, source: Any, options: dict[str, Any]) -> Any:
        """`class_name` (its TF twin in TensorFlow) from a folder or Hub id, on this device and dtype;
        an already loaded model is moved to the device (PyTorch), as `transformers` does."""
        if not isinstance(source, (str, os.PathLike)):
            if self.framework == "pt" and source.device != self.device:
                source.to(self.device)
            return source
        cls = self.model_class(class_name)
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
        return getattr(model, "dtype", "float32")

    def tensors(self, batch: dict[str, np.ndarray], model: Any) -> dict[str, Any]:
        """NumPy arrays as the model's inputs: torch tensors on its device and dtype, or NumPy for Keras."""
        if self.framework == "tf":
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
        if self.framework == "tf":
            with self.placement():
                return function(**kwargs)
        import torch

        with torch.no_grad():
            return function(**kwargs)

    def framework_tensor(self, array: np.ndarray) -> Any:
        """A NumPy row as this framework's tensor (what `return_tensors=True` hands back)."""
        if self.framework == "pt":
            import torch

            return torch.from_numpy(np.ascontiguousarray(array))
        import tensorflow as tf

        return tf.convert_to_tensor(array)


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
