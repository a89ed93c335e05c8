"""`BlipImageProcessorFast`: the batched image processor (`transformers.BlipImageProcessorFast`).

Same settings and files as `BlipImageProcessor`, computed with tensor
operations in the inputs' framework (NumPy, torch or TensorFlow), on their
device or on `device=`. Images of one size are resized together. The resize
is `transformers`' fast one (torchvision's antialiased filters, `image_resample`):
bit-exact with it for uint8 images as it runs on a CPU, within float rounding
for float images, on every framework and device (on a GPU, torchvision resizes
uint8 in float without rounding between passes: up to 6 levels apart there).
It differs from the slow, PIL-based processor by at most 2 levels on about 1%
of the values. Rescale and normalise are fused as in `transformers`:
`(x - mean / rescale_factor) / (std / rescale_factor)` in float32.

Beyond `transformers`' fast processor: `return_tensors` may be "np" or "tf"
as well as "pt" (NumPy and PIL inputs are processed without torch), outputs
may be channels last, 2-D and 1- or 4-channel images are taken, images of
more than 8 bits are scaled to 8 bits (`image_depth`), and `[]` gives a batch
of 0 images. Its `return_tensors=None` output is a list of the backend's
tensors (NumPy arrays for NumPy and PIL inputs; `transformers` gives torch tensors).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import PIL.Image

from blip_core.processing.feature import BatchFeature, check_tensor_type, to_framework
from blip_core.processing.image_backends import NumpyBackend, is_float_dtype, make_backend
from blip_core.processing.image_depth import array_to_8bit, depth_factor, pil_to_8bit
from blip_core.processing.image_loading import decode_pil, describe, to_pil_or_array, to_rgb
from blip_core.processing.image_processing import (
    _OVERRIDES,
    ImageProcessorSettings,
    as_image_list,
    channel_layout,
    empty_pixels,
    normalize_size,
    output_channels_first,
    parse_data_format,
    to_rgb_hwc,
)
from blip_core.processing.image_resample import AxisPlan, axis_plan

# Settings of transformers' fast processors beyond the slow one's (saved in its preprocessor_config.json).
_FAST_SETTINGS = ("do_center_crop", "crop_size", "do_pad", "pad_size", "default_to_square", "disable_grouping")
# Largest float magnitude taken when not brought to 8 bits: resize weights sum to < 16 in absolute value.
_FLOAT_LIMIT = float(np.finfo(np.float32).max) / 16
_FAST_DEFAULTS = {"data_format": "channels_first", "input_data_format": None, "device": None, "return_tensors": None}


class BlipImageProcessorFast(ImageProcessorSettings):
    """Resize, rescale and normalise a batch of images with tensor operations.

    >>> processor = BlipImageProcessorFast(size=32)
    >>> processor([np.zeros((40, 50, 3), np.uint8)] * 2, return_tensors="np")["pixel_values"].shape
    (2, 3, 32, 32)
    """

    def __init__(self, **kwargs: Any) -> None:
        own = {key: kwargs.pop(key, None) for key in _FAST_SETTINGS}
        defaults = {key: kwargs.pop(key, value) for key, value in _FAST_DEFAULTS.items()}
        super().__init__(**kwargs)
        self.do_center_crop = None if own["do_center_crop"] is None else bool(own["do_center_crop"])
        self.crop_size = None if own["crop_size"] is None else normalize_size(own["crop_size"], "crop_size")
        self.do_pad = None if own["do_pad"] is None else bool(own["do_pad"])
        self.pad_size = None if own["pad_size"] is None else normalize_size(own["pad_size"], "pad_size")
        self.default_to_square = True if own["default_to_square"] is None else bool(own["default_to_square"])
        self.disable_grouping = own["disable_grouping"]
        self.return_tensors = check_tensor_type(defaults["return_tensors"])
        self.data_format = defaults["data_format"]
        self.input_data_format = defaults["input_data_format"]
        self.device = defaults["device"]

    @property
    def is_fast(self) -> bool:
        return True

    def _own_settings(self) -> dict[str, Any]:
        out = {key: getattr(self, key) for key in _FAST_SETTINGS}
        out.update({key: getattr(self, key) for key in _FAST_DEFAULTS})
        out["data_format"] = getattr(out["data_format"], "value", out["data_format"])
        out["device"] = None if out["device"] is None else str(out["device"])
        return out

    def _fast_settings(self, overrides: dict[str, Any]) -> dict[str, Any]:
        settings = self._settings(overrides)
        for key in _FAST_SETTINGS:
            settings[key] = overrides[key] if overrides.get(key) is not None else getattr(self, key)
        for key in ("crop_size", "pad_size"):
            settings[key] = None if settings[key] is None else normalize_size(settings[key], key)
        if settings["do_center_crop"] and settings["crop_size"] is None:
            raise ValueError("do_center_crop=True needs crop_size ({'height': h, 'width': w})")
        if not settings["default_to_square"]:
            raise ValueError("default_to_square=False (resize the shortest edge) is not supported: BLIP takes one size")
        return settings

    def preprocess(
        self,
        images: Any,
        return_tensors: Any = None,
        input_data_format: Any = None,
        data_format: Any = None,
        device: Any = None,
        **overrides: Any,
    ) -> BatchFeature:
        """Process one image, a list or a 4-D batch; `overrides` are any of the constructor's settings.

        Returns `pixel_values`: (B, 3, H, W) float32 in the `return_tensors` framework (a list of (3, H, W)
        tensors of the inputs' framework when None; channels last with `data_format="channels_last"`).
        Raises ValueError naming the bad image or argument, TypeError for unknown arguments.
        """
        unknown = sorted(set(overrides) - set(_OVERRIDES) - set(_FAST_SETTINGS))
        if unknown:
            known = list(_OVERRIDES) + list(_FAST_SETTINGS) + ["device", "data_format", "input_data_format"]
            raise TypeError(f"{type(self).__name__} got unexpected arguments {unknown}; known: {known}")
        tensor_type = check_tensor_type(return_tensors if return_tensors is not None else self.return_tensors)
        settings = self._fast_settings(overrides)
        given_format = input_data_format if input_data_format is not None else self.input_data_format
        channels_first = parse_data_format(given_format)
        out_first = output_channels_first(data_format if data_format is not None else self.data_format)
        items = as_image_list(images)
        backend = make_backend(items, tensor_type, device if device is not None else self.device)
        with backend.context():
            tensors = [self._ingest(item, index, backend, settings, channels_first) for index, item in enumerate(items)]
            if not tensors:
                as_float = settings["do_rescale"] or settings["do_normalize"]
                empty = empty_pixels(_final_size(settings), out_first, as_float)
                return BatchFeature({"pixel_values": [] if tensor_type is None else to_framework(empty, tensor_type)})
            pixels = _finish(_resize_all(tensors, backend, settings), backend, settings, tensor_type, out_first)
            return BatchFeature({"pixel_values": pixels})

    def _ingest(
        self, item: Any, index: int, backend: NumpyBackend, settings: dict[str, Any], channels_first: bool | None
    ) -> tuple[Any, bool]:
        """One input as an (H, W, 3) tensor of `backend`, and whether it holds uint8 levels (else float32)."""
        name = f"#{index} ({describe(item)})"
        if backend.name != "np" and backend.owns(item):
            return _tensor_hwc3(backend.adopt(item), backend, channels_first, name, settings)
        image = to_pil_or_array(item)
        if isinstance(image, PIL.Image.Image):
            image = pil_to_8bit(decode_pil(image, name))
            if settings["do_convert_rgb"] and image.mode != "RGB":
                image = to_rgb(image, name)
            image, channels_first = np.asarray(image), False
        array = array_to_8bit(to_rgb_hwc(np.asarray(image), channels_first, name))
        return _typed(backend.from_numpy(array), backend, name, settings)


def _final_size(settings: dict[str, Any]) -> dict[str, int]:
    if settings["do_pad"] and settings["pad_size"] is not None:
        return settings["pad_size"]
    return settings["crop_size"] if settings["do_center_crop"] else settings["size"]


def _tensor_hwc3(
    tensor: Any, backend: NumpyBackend, channels_first: bool | None, name: str, settings: dict[str, Any]
) -> tuple[Any, bool]:
    """A caller's torch/TF tensor (2-D, HWC or CHW; 1, 3 or 4 channels) as (H, W, 3)."""
    shape = backend.shape(tensor)
    if len(shape) == 2:
        tensor, shape, channels_first = backend.reshape(tensor, (*shape, 1)), (*shape, 1), False
    if len(shape) != 3:
        raise ValueError(f"image {name} must have 2 or 3 dimensions (H, W[, C] or C, H, W), got shape {shape}")
    channels_first, channels = channel_layout(shape, channels_first, name)
    if channels_first:
        tensor = backend.transpose(tensor, (1, 2, 0))  # (C, H, W) -> (H, W, C)
    if channels == 1:
        tensor = backend.repeat_channels(tensor)
    elif channels == 4:
        tensor = tensor[:, :, :3]
    return _typed(tensor, backend, name, settings)


def _typed(tensor: Any, backend: NumpyBackend, name: str, settings: dict[str, Any]) -> tuple[Any, bool]:
    """uint8 levels (integers, bools and deep images brought to 8 bits) or float32 values."""
    dtype = backend.dtype_name(tensor)
    if dtype == "uint8":
        return tensor, True
    if dtype == "bool":
        return backend.cast(tensor, "uint8"), True
    floating = is_float_dtype(dtype)
    if not floating and not dtype.startswith(("int", "uint")):
        raise ValueError(f"image {name} has dtype {dtype}; expected uint8 or float values")
    if floating and not backend.all_finite(tensor):
        raise ValueError(f"image {name} has NaN or infinite values")
    low, high = backend.min_max(tensor)
    if floating and max(-low, high) > _FLOAT_LIMIT:  # resizing and normalising would overflow float32
        raise ValueError(f"image {name} has values of magnitude beyond {_FLOAT_LIMIT:.3g} ({low:.6g}..{high:.6g})")
    factor = depth_factor("f" if floating else "i", low, high)
    if factor is not None:
        scaled = backend.cast(tensor, "float64") * factor
        return backend.cast(backend.rint_clip(scaled), "uint8"), True
    if not floating:
        if low < 0:
            raise ValueError(f"image {name} has integral values outside [0, 255] ({low}..{high})")
        return backend.cast(tensor, "uint8"), True
    if settings["do_rescale"] and 0 <= low and high <= 1:
        warnings.warn(
            f"image {name} already looks rescaled to [0, 1]; with do_rescale=True it is "
            "divided by 255 again (pass do_rescale=False)",
            stacklevel=5,
        )
    return backend.cast(tensor, "float32"), False


def _pass(x: Any, plan: AxisPlan, backend: NumpyBackend) -> Any:
    """Resample axis 0 of x (in, ...) to plan.out_size: (out, ...) float32, as a few large products."""
    dtype = backend.matmul_dtype(plan.dtype)
    index, weights = backend.plan_arrays(plan, dtype)
    shape = backend.shape(x)
    rest = int(np.prod(shape[1:]))
    x = backend.dense(x, dtype)  # the rows to gather, contiguous
    if plan.dense:
        y = backend.matmul(weights[0], backend.reshape(x, (plan.in_size, rest)))
    else:
        blocks, rows, window = backend.shape(weights)
        gathered = backend.reshape(backend.take(x, index, axis=0), (blocks, window, rest))
        y = backend.reshape(backend.matmul(weights, gathered), (blocks * rows, rest))[: plan.out_size]
    if plan.rounded:
        y = backend.round_half_up_clip(y)
    return backend.reshape(backend.cast(y, "float32"), (plan.out_size, *shape[1:]))


def resize_batch(x: Any, size: dict[str, int], resample: int, rounded: bool, backend: NumpyBackend) -> Any:
    """Resize x (N, H, W, C) to `size`, width first then height, as torchvision's antialiased resize.

    rounded: x holds uint8 levels, rounded after each pass (torch's uint8 kernel), and the result is uint8
    (N, h, w, C); else float32.
    """
    _, height, width, _ = backend.shape(x)
    out_h, out_w = size["height"], size["width"]
    if (height, width) == (out_h, out_w):
        return x
    native = backend.native_resize(x, out_h, out_w, resample, rounded)
    if native is not None:
        return native
    if width != out_w:
        x = _pass(backend.transpose(x, (2, 1, 0, 3)), axis_plan(width, out_w, resample, rounded), backend)
        x = backend.transpose(x, (1, 0, 2, 3))  # (out_w, H, N, C) -> (H, out_w, N, C)
    else:
        x = backend.transpose(x, (1, 2, 0, 3))  # (N, H, W, C) -> (H, W, N, C)
    if height != out_h:
        x = _pass(x, axis_plan(height, out_h, resample, rounded), backend)
    x = backend.transpose(x, (2, 0, 1, 3))  # (h, w, N, C) -> (N, h, w, C)
    return backend.cast(x, "uint8") if rounded else x


def _resize_all(tensors: list[tuple[Any, bool]], backend: NumpyBackend, settings: dict[str, Any]) -> list[tuple]:
    """Resize every image, images of one shape and kind together; keeps the order."""
    if not settings["do_resize"]:
        return tensors
    groups: dict[tuple, list[int]] = {}
    for position, (tensor, rounded) in enumerate(tensors):
        groups.setdefault((backend.shape(tensor), rounded), []).append(position)
    out: list[Any] = [None] * len(tensors)
    for (_, rounded), positions in groups.items():
        batch = backend.stack([tensors[p][0] for p in positions])
        resized = resize_batch(batch, settings["size"], settings["resample"], rounded, backend)
        for offset, position in enumerate(positions):
            out[position] = (resized[offset], rounded)
    return out


def _center_crop(image: Any, size: dict[str, int], backend: NumpyBackend) -> Any:
    """transformers' center crop of (H, W, C): zero-padded first where the image is smaller."""
    height, width, _ = backend.shape(image)
    crop_h, crop_w = size["height"], size["width"]
    if crop_h > height or crop_w > width:
        top, left = max(crop_h - height, 0) // 2, max(crop_w - width, 0) // 2
        bottom, right = (max(crop_h - height, 0) + 1) // 2, (max(crop_w - width, 0) + 1) // 2
        image = backend.pad(image, top, bottom, left, right)
        height, width, _ = backend.shape(image)
    top, left = int((height - crop_h) / 2.0), int((width - crop_w) / 2.0)
    return image[top : top + crop_h, left : left + crop_w]


def _normalize(batch: Any, rounded: bool, backend: NumpyBackend, settings: dict[str, Any], first: bool) -> Any:
    """Fused rescale and normalise in float32, as `transformers`' fast processors compute it.

    `batch` is (N, H, W, C); the result is (N, C, H, W) when `first`, contiguous. Without rescale and
    normalise, uint8 stays uint8.
    """
    if first:
        batch = backend.transpose(batch, (0, 3, 1, 2))  # (N, H, W, C) -> (N, C, H, W)
    if not (settings["do_rescale"] or settings["do_normalize"]):
        return backend.dense(batch, "uint8" if rounded else "float32")
    batch = backend.dense(batch, "float32")  # a fresh array, which the steps below overwrite
    shape = (3, 1, 1) if first else (3,)
    mean = np.asarray(settings["image_mean"], np.float32).reshape(shape)
    std = np.asarray(settings["image_std"], np.float32).reshape(shape)
    if settings["do_rescale"] and settings["do_normalize"]:
        inverse = np.float32(1.0 / settings["rescale_factor"])
        return backend.sub_div(batch, mean * inverse, std * inverse)
    if settings["do_normalize"]:
        return backend.sub_div(batch, mean, std)
    return batch * backend.constant(np.float32(settings["rescale_factor"]))


def _pad_target(images: list[tuple], settings: dict[str, Any], backend: NumpyBackend) -> tuple[int, int] | None:
    """(height, width) every image is padded to (bottom and right, with zeros), or None."""
    if not settings["do_pad"]:
        return None
    sizes = [backend.shape(image)[:2] for image, _ in images]
    pad_size = settings["pad_size"]
    heights, widths = [size[0] for size in sizes], [size[1] for size in sizes]
    target = (pad_size["height"], pad_size["width"]) if pad_size else (max(heights), max(widths))
    for size in sizes:
        if size[0] > target[0] or size[1] > target[1]:
            raise ValueError(f"pad_size {pad_size} is smaller than an image of size {size}")
    return target


def _finish(
    images: list[tuple], backend: NumpyBackend, settings: dict[str, Any], tensor_type: str | None, first: bool
) -> Any:
    """Center crop; rescale/normalise each shape's images as one batch in the output layout; pad; stack."""
    if settings["do_center_crop"]:
        images = [(_center_crop(image, settings["crop_size"], backend), rounded) for image, rounded in images]
    target = _pad_target(images, settings, backend)
    groups: dict[tuple, list[int]] = {}
    for position, (image, rounded) in enumerate(images):
        groups.setdefault((backend.shape(image), rounded), []).append(position)
    batches = {}
    for (shape, rounded), positions in groups.items():
        batch = backend.stack([images[p][0] for p in positions])
        batches[(shape, rounded)] = _normalize(batch, rounded, backend, settings, first)
    if len(groups) == 1 and (target is None or target == next(iter(groups))[0][:2]):
        batch = next(iter(batches.values()))  # every image, in order: no unstacking
        return [batch[i] for i in range(len(images))] if tensor_type is None else _convert(batch, backend, tensor_type)
    out: list[Any] = [None] * len(images)
    for key, positions in groups.items():
        for offset, position in enumerate(positions):
            out[position] = batches[key][offset]
    if target is not None:
        out = [_pad_to(image, target, backend, first) for image in out]
    if tensor_type is None:
        return out
    shapes = {backend.shape(image) for image in out}
    if len(shapes) > 1:
        raise ValueError(
            f"images have different sizes {sorted(shapes)} and cannot be stacked; "
            "keep do_resize=True, set do_pad=True or pass images of one size"
        )
    return _convert(backend.stack(out), backend, tensor_type)


def _pad_to(image: Any, target: tuple[int, int], backend: NumpyBackend, first: bool) -> Any:
    height, width = backend.shape(image)[1:] if first else backend.shape(image)[:2]
    return backend.pad(image, 0, target[0] - height, 0, target[1] - width, channels_first=first)


def _convert(batch: Any, backend: NumpyBackend, tensor_type: str) -> Any:
    if backend.name == tensor_type:
        return batch
    return to_framework(np.ascontiguousarray(backend.to_numpy(batch)), tensor_type)
