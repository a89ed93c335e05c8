"""The few tensor operations the fast image processor needs, for NumPy, torch and TensorFlow.

Each backend is made only when asked for, so `blip_core` never imports torch
or tensorflow by itself. Tensors stay on their device; the resampling plans
(NumPy arrays, `image_resample`) are copied to the device once and cached.
Matrix products use float64 where the caller's settings could lower float32
precision (TF32 on GPUs, `torch.set_float32_matmul_precision`), so results
do not depend on them.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from blip_core.processing.image_resample import BICUBIC, BILINEAR, NEAREST, AxisPlan

_FLOAT_KINDS = ("float16", "bfloat16", "float32", "float64")
_PLAN_CACHE: dict[tuple, tuple] = {}  # (backend, device, plan id, dtype) -> (plan, index, weights)
_PLAN_CACHE_SIZE = 512


class NumpyBackend:
    """Operations on NumPy arrays (the CPU path for PIL and NumPy inputs)."""

    name = "np"

    def __init__(self, device: Any = None) -> None:
        if device not in (None, "cpu"):
            raise ValueError(f"device={device!r} needs torch or tensorflow tensors; NumPy runs on the CPU")
        self.device = None

    def context(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def owns(self, image: Any) -> bool:
        return isinstance(image, np.ndarray)

    def from_numpy(self, array: np.ndarray) -> Any:
        return array

    def to_numpy(self, tensor: Any) -> np.ndarray:
        return np.asarray(tensor)

    def dtype_name(self, tensor: Any) -> str:
        return str(tensor.dtype)

    def cast(self, tensor: Any, dtype: str) -> Any:
        return tensor.astype(dtype, copy=False)

    def dense(self, tensor: Any, dtype: str) -> Any:
        """`tensor` in `dtype`, laid out row-major for its current shape (one copy at most)."""
        return np.ascontiguousarray(tensor, dtype=dtype)

    def shape(self, tensor: Any) -> tuple[int, ...]:
        return tuple(int(n) for n in tensor.shape)

    def transpose(self, tensor: Any, axes: tuple[int, ...]) -> Any:
        return np.transpose(tensor, axes)

    def reshape(self, tensor: Any, shape: tuple[int, ...]) -> Any:
        return np.reshape(tensor, shape)

    def stack(self, tensors: list[Any]) -> Any:
        return np.stack(tensors)

    def take(self, tensor: Any, index: Any, axis: int) -> Any:
        return np.take(tensor, index, axis=axis)

    def matmul(self, a: Any, b: Any) -> Any:
        return np.matmul(a, b)

    def min_max(self, tensor: Any) -> tuple[float, float]:
        return float(tensor.min()), float(tensor.max())

    def all_finite(self, tensor: Any) -> bool:
        return bool(np.isfinite(tensor).all())

    def sub_div(self, batch: Any, mean: np.ndarray, std: np.ndarray) -> Any:
        """(batch - mean) / std, overwriting `batch` (a fresh float32 array) where the framework allows."""
        np.subtract(batch, mean, out=batch)
        return np.divide(batch, std, out=batch)

    def round_half_up_clip(self, tensor: Any) -> Any:
        tensor = np.floor(tensor + 0.5)
        return np.clip(tensor, 0, 255, out=tensor)

    def rint_clip(self, tensor: Any) -> Any:
        return np.clip(np.rint(tensor), 0, 255)

    def contiguous(self, tensor: Any) -> Any:
        return np.ascontiguousarray(tensor)

    def repeat_channels(self, tensor: Any) -> Any:
        """(H, W, 1) -> (H, W, 3)."""
        return np.concatenate([tensor, tensor, tensor], axis=-1)

    def pad(self, tensor: Any, top: int, bottom: int, left: int, right: int, channels_first: bool = False) -> Any:
        """Zeros around an (H, W, C) image, or a (C, H, W) one."""
        sides = [(top, bottom), (left, right)]
        return np.pad(tensor, [(0, 0), *sides] if channels_first else [*sides, (0, 0)])

    def constant(self, values: np.ndarray) -> Any:
        return values

    def matmul_dtype(self, dtype: type) -> str:
        return np.dtype(dtype).name

    def native_resize(self, batch: Any, height: int, width: int, resample: int, rounded: bool) -> Any | None:
        """The framework's own resize where it equals the plans' result exactly, else None."""
        return None

    def plan_arrays(self, plan: AxisPlan, dtype: str) -> tuple[Any, Any]:
        """The plan's gather index and weights (in `dtype`) as constants of this backend, cached per device."""
        key = (self.name, str(self.device), id(plan), dtype)
        entry = _PLAN_CACHE.get(key)  # held locally: another thread may clear the cache meanwhile
        if entry is None or entry[0] is not plan:
            if len(_PLAN_CACHE) >= _PLAN_CACHE_SIZE:
                _PLAN_CACHE.clear()
            entry = _PLAN_CACHE[key] = (plan, self.constant(plan.index), self.constant(plan.weights.astype(dtype)))
        return entry[1], entry[2]


class TorchBackend(NumpyBackend):
    """Operations on torch tensors, on `device` (or the inputs' own device)."""

    name = "pt"

    def __init__(self, device: Any = None) -> None:
        import torch

        self.torch = torch
        self.device = None if device is None else _torch_device(torch, device)

    def owns(self, image: Any) -> bool:
        return isinstance(image, self.torch.Tensor)

    def adopt(self, tensor: Any) -> Any:
        """A caller's tensor, detached and moved to the chosen device (the first tensor's, when none was given)."""
        if self.device is None:
            self.device = tensor.device
        return tensor.detach().to(self.device)

    def from_numpy(self, array: np.ndarray) -> Any:
        array = np.ascontiguousarray(array)
        tensor = self.torch.from_numpy(array if array.flags.writeable else array.copy())
        return tensor if self.device is None else tensor.to(self.device)

    def to_numpy(self, tensor: Any) -> np.ndarray:
        return tensor.detach().cpu().numpy()

    def dtype_name(self, tensor: Any) -> str:
        return str(tensor.dtype).replace("torch.", "")

    def cast(self, tensor: Any, dtype: str) -> Any:
        if dtype == "float64" and tensor.device.type == "mps":  # MPS has no float64
            dtype = "float32"
        return tensor.to(getattr(self.torch, dtype))

    def dense(self, tensor: Any, dtype: str) -> Any:
        if dtype == "float64" and tensor.device.type == "mps":  # MPS has no float64
            dtype = "float32"
        return tensor.to(dtype=getattr(self.torch, dtype), memory_format=self.torch.contiguous_format)

    def transpose(self, tensor: Any, axes: tuple[int, ...]) -> Any:
        return tensor.permute(*axes)

    def reshape(self, tensor: Any, shape: tuple[int, ...]) -> Any:
        return tensor.reshape(shape)

    def stack(self, tensors: list[Any]) -> Any:
        return self.torch.stack(tensors)

    def take(self, tensor: Any, index: Any, axis: int) -> Any:
        return self.torch.index_select(tensor, axis % tensor.dim(), index)

    def matmul(self, a: Any, b: Any) -> Any:
        return self.torch.matmul(a, b)

    def min_max(self, tensor: Any) -> tuple[float, float]:
        wide_unsigned = tuple(getattr(self.torch, name, None) for name in ("uint16", "uint32", "uint64"))
        if tensor.dtype == self.torch.bool:
            tensor = tensor.to(self.torch.uint8)
        elif tensor.dtype in wide_unsigned:  # torch has no min/max kernels for these
            tensor = tensor.to(self.torch.float64)
        values = self.torch.aminmax(tensor)
        return float(values.min), float(values.max)

    def all_finite(self, tensor: Any) -> bool:
        return bool(self.torch.isfinite(tensor).all())

    def sub_div(self, batch: Any, mean: np.ndarray, std: np.ndarray) -> Any:
        return batch.sub_(self.constant(mean)).div_(self.constant(std))

    def round_half_up_clip(self, tensor: Any) -> Any:
        return self.torch.clamp(self.torch.floor(tensor + 0.5), 0, 255)

    def rint_clip(self, tensor: Any) -> Any:
        return self.torch.clamp(self.torch.round(tensor), 0, 255)

    def contiguous(self, tensor: Any) -> Any:
        return tensor.contiguous()

    def repeat_channels(self, tensor: Any) -> Any:
        return self.torch.cat([tensor, tensor, tensor], dim=-1)

    def pad(self, tensor: Any, top: int, bottom: int, left: int, right: int, channels_first: bool = False) -> Any:
        sides = (left, right, top, bottom)
        return self.torch.nn.functional.pad(tensor, sides if channels_first else (0, 0, *sides))

    def constant(self, values: np.ndarray) -> Any:
        return self.from_numpy(values)

    def matmul_dtype(self, dtype: type) -> str:
        on_cpu = self.device is None or self.device.type == "cpu"
        lowered = self.torch.get_float32_matmul_precision() != "highest" or (
            not on_cpu and self.torch.backends.cuda.matmul.allow_tf32
        )
        return "float64" if lowered else np.dtype(dtype).name

    def native_resize(self, batch: Any, height: int, width: int, resample: int, rounded: bool) -> Any | None:
        """torch's integer kernel for uint8 on an AVX2/AVX-512 CPU: what torchvision runs, bit-exact with the
        plans (tested) and many times faster. (N, H, W, C) uint8 -> (N, height, width, C) uint8."""
        modes = {NEAREST: "nearest-exact", BILINEAR: "bilinear", BICUBIC: "bicubic"}
        if not rounded or batch.dtype != self.torch.uint8 or batch.device.type != "cpu" or resample not in modes:
            return None
        if self.torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
            return None
        options = {} if resample == NEAREST else {"antialias": True, "align_corners": False}
        nchw = batch.permute(0, 3, 1, 2)  # a channels-last view, which the kernel reads directly
        out = self.torch.nn.functional.interpolate(nchw, size=(height, width), mode=modes[resample], **options)
        return out.permute(0, 2, 3, 1)


class TensorFlowBackend(NumpyBackend):
    """Operations on TensorFlow tensors, inside `tf.device(device)` when one is given."""

    name = "tf"

    def __init__(self, device: Any = None) -> None:
        import tensorflow as tf

        self.tf = tf
        self.device = device

    def context(self) -> contextlib.AbstractContextManager:
        return self.tf.device(self.device) if self.device is not None else contextlib.nullcontext()

    def owns(self, image: Any) -> bool:
        return self.tf.is_tensor(image) or isinstance(image, self.tf.Variable)

    def adopt(self, tensor: Any) -> Any:
        return self.tf.identity(tensor)

    def from_numpy(self, array: np.ndarray) -> Any:
        return self.tf.convert_to_tensor(np.ascontiguousarray(array))

    def to_numpy(self, tensor: Any) -> np.ndarray:
        return tensor.numpy()

    def dtype_name(self, tensor: Any) -> str:
        return tensor.dtype.name

    def cast(self, tensor: Any, dtype: str) -> Any:
        return self.tf.cast(tensor, dtype)

    def dense(self, tensor: Any, dtype: str) -> Any:
        return self.tf.cast(tensor, dtype)

    def transpose(self, tensor: Any, axes: tuple[int, ...]) -> Any:
        return self.tf.transpose(tensor, axes)

    def reshape(self, tensor: Any, shape: tuple[int, ...]) -> Any:
        return self.tf.reshape(tensor, shape)

    def stack(self, tensors: list[Any]) -> Any:
        return self.tf.stack(tensors)

    def take(self, tensor: Any, index: Any, axis: int) -> Any:
        return self.tf.gather(tensor, index, axis=axis)

    def matmul(self, a: Any, b: Any) -> Any:
        return self.tf.linalg.matmul(a, b)

    def min_max(self, tensor: Any) -> tuple[float, float]:
        if tensor.dtype == self.tf.bool:
            tensor = self.tf.cast(tensor, "uint8")
        return float(self.tf.reduce_min(tensor)), float(self.tf.reduce_max(tensor))

    def all_finite(self, tensor: Any) -> bool:
        return bool(self.tf.reduce_all(self.tf.math.is_finite(tensor)))

    def sub_div(self, batch: Any, mean: np.ndarray, std: np.ndarray) -> Any:
        return (batch - self.constant(mean)) / self.constant(std)

    def round_half_up_clip(self, tensor: Any) -> Any:
        return self.tf.clip_by_value(self.tf.floor(tensor + 0.5), 0, 255)

    def rint_clip(self, tensor: Any) -> Any:
        return self.tf.clip_by_value(self.tf.round(tensor), 0, 255)

    def contiguous(self, tensor: Any) -> Any:
        return tensor

    def repeat_channels(self, tensor: Any) -> Any:
        return self.tf.concat([tensor, tensor, tensor], axis=-1)

    def pad(self, tensor: Any, top: int, bottom: int, left: int, right: int, channels_first: bool = False) -> Any:
        sides = [[top, bottom], [left, right]]
        return self.tf.pad(tensor, [[0, 0], *sides] if channels_first else [*sides, [0, 0]])

    def constant(self, values: np.ndarray) -> Any:
        return self.tf.constant(values)

    def matmul_dtype(self, dtype: type) -> str:
        on_gpu = bool(self.tf.config.list_logical_devices("GPU"))
        lowered = on_gpu and self.tf.config.experimental.tensor_float_32_execution_enabled()
        return "float64" if lowered else np.dtype(dtype).name


def _torch_device(torch: Any, device: Any) -> Any:
    """`device` as a torch.device; ValueError when it is malformed or not available here."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"device={device!r} is not a torch device ({err})") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
    check = available.get(parsed.type)
    if check is not None and not (check if isinstance(check, bool) else check()):
        raise ValueError(f"device={device!r} is not available on this machine")
    return parsed


def framework_of(image: Any) -> str | None:
    """'pt', 'tf' or None for one input, from its type's module (no framework import)."""
    module = type(image).__module__.split(".", 1)[0]
    return {"torch": "pt", "tensorflow": "tf", "keras": "tf"}.get(module)


def make_backend(images: list[Any], return_tensors: str | None, device: Any) -> NumpyBackend:
    """The backend of the inputs' framework, else of `return_tensors`, else of `device`, else NumPy."""
    frameworks = {framework_of(image) for image in images} - {None}
    if len(frameworks) > 1:
        raise ValueError("images mix torch and TensorFlow tensors; pass tensors of one framework")
    name = frameworks.pop() if frameworks else return_tensors
    if name not in ("pt", "tf") and device not in (None, "cpu"):
        name = "tf" if isinstance(device, str) and device.startswith("/") else "pt"
    if name == "pt":
        if device is None:  # the first tensor's device, so that every image lands on it
            device = next((image.device for image in images if framework_of(image) == "pt"), None)
        return TorchBackend(device)
    if name == "tf":
        return TensorFlowBackend(device)
    return NumpyBackend(device)


def is_float_dtype(name: str) -> bool:
    return name in _FLOAT_KINDS
