"""Device names as `transformers` reads them, for PyTorch and for TensorFlow, checked to exist on this machine.

`device` takes an int (-1 for the CPU, n >= 0 for accelerator n, falling back to the CPU when there is none), a
string ("cpu", "cuda:1", "mps", or a TensorFlow device such as "/GPU:0") or a `torch.device`. Used by the
pipelines and by the TF tree's `from_pretrained(device=...)`; frameworks are imported lazily, inside a call.
"""

from __future__ import annotations

from typing import Any


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
