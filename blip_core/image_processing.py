"""`BlipImageProcessor`: bit-exact with `transformers`' slow BLIP processor.

The pipeline is (REFERENCE §4.1): convert PIL images to RGB -> array ->
resize through PIL on uint8 -> rescale in float64, stored as float32 ->
normalise in float32 -> channels first. Beyond `transformers`, 2-D grayscale
arrays and 1- or 4-channel arrays are taken (channels replicated, alpha
dropped, as PIL's `convert("RGB")` does), and the Dec-2022
`preprocessor_config.json` forms load.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from blip_core.atomic import atomic_write_text
from blip_core.feature import BatchFeature, check_tensor_type, to_framework
from blip_core.image_loading import describe, flatten_images, to_pil_or_array

IMAGE_PROCESSOR_NAME = "preprocessor_config.json"
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_RESAMPLE_NAMES = {
    "nearest": 0,
    "lanczos": 1,
    "bilinear": 2,
    "bicubic": 3,
    "box": 4,
    "hamming": 5,
}
_OVERRIDES = (
    "do_resize",
    "size",
    "resample",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
    "do_convert_rgb",
)


def normalize_size(size: Any, name: str = "size") -> dict[str, int]:
    """`size` as {"height", "width"}: from an int, a (h, w) pair, or a dict.

    `{"shortest_edge": n}` (Dec-2022 configs) means n x n: BLIP models take
    square inputs of their configured size.
    """
    if isinstance(size, bool):
        raise ValueError(f"{name} must be an int, (height, width) or a dict, got {size!r}")
    if isinstance(size, int):
        size = {"height": size, "width": size}
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        size = {"height": size[0], "width": size[1]}
    elif isinstance(size, dict) and "shortest_edge" in size and "height" not in size:
        size = {"height": size["shortest_edge"], "width": size["shortest_edge"]}
    if not isinstance(size, dict) or set(size) != {"height", "width"}:
        raise ValueError(f"{name} must be an int, (height, width) or a dict with 'height' and 'width', got {size!r}")
    for key, value in size.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name}[{key!r}] must be a positive integer, got {value!r}")
    return {"height": size["height"], "width": size["width"]}


def normalize_resample(resample: Any) -> int:
    if isinstance(resample, str) and resample.lower() in _RESAMPLE_NAMES:
        return _RESAMPLE_NAMES[resample.lower()]
    value = getattr(resample, "value", resample)
    if isinstance(value, bool) or not isinstance(value, int) or value not in _RESAMPLE_NAMES.values():
        raise ValueError(f"resample must be a PIL resampling filter (0-5) or its name, got {resample!r}")
    return value


def _channel_triple(value: Any, name: str) -> tuple[float, float, float]:
    values = [value] * 3 if isinstance(value, (int, float)) else list(np.ravel(value))
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 values (one per RGB channel) or be one number, got {value!r}")
    if name == "image_std" and any(float(v) == 0 for v in values):
        raise ValueError(f"image_std must not contain zeros, got {value!r}")
    return tuple(float(v) for v in values)


def _to_rgb_hwc(array: np.ndarray, channels_first: bool | None, name: str) -> np.ndarray:
    """An array as H x W x 3: channel order inferred like `transformers`, 1 or 4 channels accepted."""
    if array.dtype == object or array.dtype.kind not in "uifb":
        raise ValueError(f"image {name} has dtype {array.dtype}; expected uint8 or float values")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"image {name} must have 2 or 3 dimensions (H, W[, C] or C, H, W)")
    if channels_first is None:
        channels_first = array.shape[0] in (1, 3, 4) and not (array.shape[0] == 4 and array.shape[-1] in (1, 3))
        if not channels_first and array.shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"image {name}: cannot tell the channel axis of an array of shape {array.shape}; "
                "expected 1, 3 or 4 channels first or last"
            )
    if channels_first:
        array = np.transpose(array, (1, 2, 0))  # (C, H, W) -> (H, W, C)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    elif array.shape[-1] == 4:
        array = array[..., :3]
    elif array.shape[-1] != 3:
        raise ValueError(f"image {name} has {array.shape[-1]} channels; expected 1, 3 or 4")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image {name} is empty (shape {array.shape})")
    return array.astype(np.uint8) if array.dtype == bool else array


def _needs_pil_rescale(image: np.ndarray, name: str) -> bool:
    """Whether a float image must be scaled by 255 before PIL, as `transformers` decides."""
    if image.dtype == np.uint8:
        return False
    if np.allclose(image, image.astype(int)):
        if image.min() >= 0 and image.max() <= 255:
            return False
        raise ValueError(f"image {name} has integral values outside [0, 255] ({image.min()}..{image.max()})")
    if image.min() >= 0 and image.max() <= 1:
        return True
    raise ValueError(
        f"image {name} has float values outside [0, 1] that are not integers in [0, 255] ({image.min()}..{image.max()})"
    )


def rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """Multiply in float64 and store float32, exactly as `transformers.image_transforms.rescale`."""
    return (image.astype(np.float64) * scale).astype(np.float32)


def resize(image: np.ndarray, size: dict[str, int], resample: int, name: str = "image") -> np.ndarray:
    """Resize an H x W x 3 array through PIL on uint8 (floats in [0, 1] round-trip via x255)."""
    scaled = _needs_pil_rescale(image, name)
    pixels = rescale(image, 255) if scaled else image
    pil = PIL.Image.fromarray(pixels.astype(np.uint8))
    out = np.array(pil.resize((size["width"], size["height"]), resample=resample))
    return rescale(out, 1 / 255) if scaled else out


def normalize(image: np.ndarray, mean: tuple, std: tuple) -> np.ndarray:
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
    return (image - np.array(mean, dtype=image.dtype)) / np.array(std, dtype=image.dtype)


class BlipImageProcessor:
    """Resize, rescale and normalise images for BLIP (`transformers.BlipImageProcessor`).

    >>> processor = BlipImageProcessor(size=32)
    >>> processor(np.zeros((40, 50, 3), np.uint8), return_tensors="np")["pixel_values"].shape
    (1, 3, 32, 32)
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        do_resize: bool = True,
        size: Any = None,
        resample: Any = PIL.Image.BICUBIC,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Any = None,
        image_std: Any = None,
        do_convert_rgb: bool = True,
        **kwargs: Any,
    ) -> None:
        self.do_resize = bool(do_resize)
        self.size = normalize_size(size if size is not None else 384)
        self.resample = normalize_resample(resample)
        self.do_rescale = bool(do_rescale)
        self.rescale_factor = float(rescale_factor)
        self.do_normalize = bool(do_normalize)
        self.image_mean = list(_channel_triple(OPENAI_CLIP_MEAN if image_mean is None else image_mean, "image_mean"))
        self.image_std = list(_channel_triple(OPENAI_CLIP_STD if image_std is None else image_std, "image_std"))
        self.do_convert_rgb = bool(do_convert_rgb)
        # Inert keys of older configs (do_pad, size_divisor, processor_class, ...) are kept.
        self.extra = {key: value for key, value in kwargs.items() if key != "image_processor_type"}

    # -- processing ------------------------------------------------------------

    def __call__(self, images: Any, return_tensors: Any = None, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, return_tensors=return_tensors, **kwargs)

    def preprocess(
        self,
        images: Any,
        return_tensors: Any = None,
        input_data_format: str | None = None,
        **overrides: Any,
    ) -> BatchFeature:
        """Process one image or a list; `overrides` are any of the constructor's settings."""
        tensor_type = check_tensor_type(return_tensors)
        unknown = sorted(set(overrides) - set(_OVERRIDES) - {"data_format"})
        if unknown:
            raise TypeError(f"BlipImageProcessor got unexpected arguments {unknown}; known: {list(_OVERRIDES)}")
        settings = self._settings(overrides)
        channels_first = _parse_data_format(input_data_format)
        items = _as_image_list(images)
        arrays = [self._process_one(item, settings, channels_first, index) for index, item in enumerate(items)]
        if tensor_type is None:
            return BatchFeature({"pixel_values": arrays})
        shapes = {array.shape for array in arrays}
        if len(shapes) > 1:
            raise ValueError(
                f"images have different sizes {sorted(shapes)} and cannot be stacked; "
                "keep do_resize=True or pass images of one size"
            )
        return BatchFeature({"pixel_values": to_framework(np.stack(arrays), tensor_type)})

    def _settings(self, overrides: dict[str, Any]) -> dict[str, Any]:
        settings = {key: getattr(self, key) for key in _OVERRIDES}
        settings.update({key: value for key, value in overrides.items() if key in _OVERRIDES and value is not None})
        settings["size"] = normalize_size(settings["size"])
        settings["resample"] = normalize_resample(settings["resample"])
        settings["image_mean"] = _channel_triple(settings["image_mean"], "image_mean")
        settings["image_std"] = _channel_triple(settings["image_std"], "image_std")
        return settings

    def _process_one(self, item: Any, settings: dict[str, Any], channels_first: bool | None, index: int) -> np.ndarray:
        name = f"#{index} ({describe(item)})"
        image = to_pil_or_array(item)
        if isinstance(image, PIL.Image.Image):
            if settings["do_convert_rgb"] and image.mode != "RGB":
                image = image.convert("RGB")
            image = np.array(image)
            channels_first = False
        array = _to_rgb_hwc(np.asarray(image), channels_first, name)
        if settings["do_rescale"] and array.dtype != np.uint8 and array.size and 0 <= array.min() and array.max() <= 1:
            warnings.warn(
                f"image {name} already looks rescaled to [0, 1]; with do_rescale=True it is "
                "divided by 255 again (pass do_rescale=False)",
                stacklevel=4,
            )
        if settings["do_resize"]:
            array = resize(array, settings["size"], settings["resample"], name)
        if settings["do_rescale"]:
            array = rescale(array, settings["rescale_factor"])
        if settings["do_normalize"]:
            array = normalize(array, settings["image_mean"], settings["image_std"])
        return np.ascontiguousarray(np.transpose(array, (2, 0, 1)), dtype=np.float32)  # (H, W, C) -> (C, H, W)

    # -- files -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        out.update({key: getattr(self, key) for key in _OVERRIDES})
        out["size"] = dict(self.size)
        out["image_processor_type"] = type(self).__name__
        return dict(sorted(out.items()))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        path = Path(save_directory) / IMAGE_PROCESSOR_NAME
        atomic_write_text(path, self.to_json_string())
        return path

    @classmethod
    def from_dict(cls, config: dict[str, Any], **kwargs: Any) -> BlipImageProcessor:
        if not isinstance(config, dict):
            raise TypeError(f"BlipImageProcessor.from_dict expects a dict, got {type(config).__name__}")
        return cls(**{**config, **kwargs})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> BlipImageProcessor:
        """Load `preprocessor_config.json` from a folder, a file path or a Hub id."""
        from blip_core.configuration import read_config_json
        from blip_core.hub import resolve_file

        hub_options = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
        source = Path(pretrained_model_name_or_path)
        path = (
            source
            if source.is_file()
            else resolve_file(pretrained_model_name_or_path, IMAGE_PROCESSOR_NAME, **hub_options)
        )
        config = read_config_json(path)
        try:
            return cls.from_dict(config, **kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"


def _parse_data_format(value: str | None) -> bool | None:
    formats = {None: None, "channels_first": True, "channels_last": False}
    value = getattr(value, "value", value)
    if value not in formats:
        raise ValueError(f"input_data_format must be 'channels_first', 'channels_last' or None, got {value!r}")
    return formats[value]


def _as_image_list(images: Any) -> list[Any]:
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if type(images).__module__.split(".", 1)[0] == "torch" and getattr(images, "ndim", 0) == 4:
        return list(images)
    items = flatten_images(images)
    if not items:
        raise ValueError("no images given: expected an image or a non-empty list of images")
    if any(item is None for item in items):
        raise ValueError("images contain None; expected an image, a path or a URL for each item")
    return items
