"""`BlipImageProcessor`: bit-exact with `transformers`' slow BLIP processor.

The pipeline is (REFERENCE §4.1): convert PIL images to RGB -> array ->
resize through PIL on uint8 -> rescale in float64, stored as float32 ->
normalise in float32 -> channels first. Beyond `transformers`, 2-D grayscale
arrays and 1- or 4-channel arrays are taken (channels replicated, alpha
dropped, as PIL's `convert("RGB")` does), images of more than 8 bits are
scaled to 8 bits instead of clipped (`image_depth`), an empty list gives an
empty batch (0, 3, H, W), and the Dec-2022 `preprocessor_config.json` forms load.

`ImageProcessorSettings` (the settings, `to_dict`, `save_pretrained`,
`from_pretrained`) is shared with `BlipImageProcessorFast`.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from blip_core.io.atomic import atomic_write_text
from blip_core.io.hub_upload import PushToHubMixin
from blip_core.processing.feature import BatchFeature, check_tensor_type, to_framework
from blip_core.processing.image_depth import array_to_8bit, pil_to_8bit
from blip_core.processing.image_loading import decode_pil, describe, flatten_images, to_pil_or_array, to_rgb

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


def channel_triple(value: Any, name: str) -> tuple[float, float, float]:
    values = [value] * 3 if isinstance(value, (int, float)) else list(np.ravel(value))
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 values (one per RGB channel) or be one number, got {value!r}")
    if name == "image_std" and any(float(v) == 0 for v in values):
        raise ValueError(f"image_std must not contain zeros, got {value!r}")
    return tuple(float(v) for v in values)


def channel_layout(shape: tuple[int, ...], channels_first: bool | None, name: str) -> tuple[bool, int]:
    """(channels first?, channels) of a 3-D image shape, inferred like `transformers` when not given.

    Raises ValueError when the channel axis cannot be told or holds other than 1, 3 or 4 channels.
    """
    if channels_first is None:
        channels_first = shape[0] in (1, 3, 4) and not (shape[0] == 4 and shape[-1] in (1, 3))
        if not channels_first and shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"image {name}: cannot tell the channel axis of an array of shape {tuple(shape)}; "
                "expected 1, 3 or 4 channels first or last"
            )
    channels = shape[0] if channels_first else shape[-1]
    if channels not in (1, 3, 4):
        raise ValueError(f"image {name} has {channels} channels; expected 1, 3 or 4")
    height, width = shape[1:] if channels_first else shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"image {name} is empty (shape {tuple(shape)})")
    return channels_first, channels


def to_rgb_hwc(array: np.ndarray, channels_first: bool | None, name: str) -> np.ndarray:
    """An array as H x W x 3: channel order inferred like `transformers`, 1 or 4 channels accepted."""
    if array.dtype == object or array.dtype.kind not in "uifb":
        raise ValueError(f"image {name} has dtype {array.dtype}; expected uint8 or float values")
    if array.ndim == 2:  # (H, W) grayscale, whatever its sizes
        array, channels_first = array[:, :, None], False
    if array.ndim != 3:
        raise ValueError(f"image {name} must have 2 or 3 dimensions (H, W[, C] or C, H, W)")
    channels_first, channels = channel_layout(array.shape, channels_first, name)
    if channels_first:
        array = np.transpose(array, (1, 2, 0))  # (C, H, W) -> (H, W, C)
    if channels == 1:
        array = np.repeat(array, 3, axis=-1)
    elif channels == 4:
        array = array[..., :3]
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


def output_channels_first(value: Any) -> bool:
    """True for channels-first output (None, 'channels_first'), False for 'channels_last'; else ValueError."""
    formats = {None: True, "channels_first": True, "channels_last": False}
    value = getattr(value, "value", value)
    if value not in formats:
        raise ValueError(f"data_format must be 'channels_first' or 'channels_last', got {value!r}")
    return formats[value]


def empty_pixels(size: dict[str, int], channels_first: bool, as_float: bool) -> np.ndarray:
    """The pixel values of a batch of 0 images: (0, 3, H, W) (or (0, H, W, 3)), float32 (uint8 if not as_float)."""
    shape = (0, 3, size["height"], size["width"]) if channels_first else (0, size["height"], size["width"], 3)
    return np.zeros(shape, np.float32 if as_float else np.uint8)


class ImageProcessorSettings(PushToHubMixin):
    """Settings, `__call__` and the `preprocessor_config.json` round trip of the BLIP image processors."""

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
        self.image_mean = list(channel_triple(OPENAI_CLIP_MEAN if image_mean is None else image_mean, "image_mean"))
        self.image_std = list(channel_triple(OPENAI_CLIP_STD if image_std is None else image_std, "image_std"))
        self.do_convert_rgb = bool(do_convert_rgb)
        # Inert keys of older configs (do_pad, size_divisor, processor_class, ...) are kept.
        self.extra = {key: value for key, value in kwargs.items() if key != "image_processor_type"}

    def __call__(self, images: Any, return_tensors: Any = None, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, return_tensors=return_tensors, **kwargs)

    def preprocess(self, images: Any, return_tensors: Any = None, **kwargs: Any) -> BatchFeature:
        raise NotImplementedError

    def _settings(self, overrides: dict[str, Any]) -> dict[str, Any]:
        settings = {key: getattr(self, key) for key in _OVERRIDES}
        settings.update({key: value for key, value in overrides.items() if key in _OVERRIDES and value is not None})
        settings["size"] = normalize_size(settings["size"])
        settings["resample"] = normalize_resample(settings["resample"])
        settings["image_mean"] = channel_triple(settings["image_mean"], "image_mean")
        settings["image_std"] = channel_triple(settings["image_std"], "image_std")
        return settings

    # -- files -------------------------------------------------------------------

    def _own_settings(self) -> dict[str, Any]:
        """Settings a subclass adds to `to_dict` beyond the slow processor's."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        out.update({key: getattr(self, key) for key in _OVERRIDES})
        out.update(self._own_settings())
        out["size"] = dict(self.size)
        out["image_processor_type"] = type(self).__name__
        return dict(sorted(out.items()))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs: Any) -> Path:
        """Write `preprocessor_config.json` atomically; `push_to_hub=True` also uploads it."""
        from blip_core.io.hub_upload import check_save_kwargs

        check_save_kwargs(type(self).__name__, push_to_hub, kwargs)
        path = Path(save_directory) / IMAGE_PROCESSOR_NAME
        atomic_write_text(path, self.to_json_string())
        return path

    @classmethod
    def from_dict(cls, config: dict[str, Any], **kwargs: Any) -> ImageProcessorSettings:
        if not isinstance(config, dict):
            raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(config).__name__}")
        return cls(**{**config, **kwargs})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> ImageProcessorSettings:
        """Load `preprocessor_config.json` from a folder, a file path or a Hub id."""
        path = resolve_image_processor_file(pretrained_model_name_or_path, kwargs)
        config = read_image_processor_config(path)
        try:
            return cls.from_dict(config, **kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"


def resolve_image_processor_file(name_or_path: str | os.PathLike, kwargs: dict[str, Any]) -> Path:
    """The `preprocessor_config.json` of a folder, a file path or a Hub id (pops Hub options from kwargs)."""
    from blip_core.io.hub import resolve_file, split_hub_options

    hub_options, rest = split_hub_options(kwargs)
    kwargs.clear()
    kwargs.update(rest)
    source = Path(name_or_path)
    return source if source.is_file() else Path(resolve_file(name_or_path, IMAGE_PROCESSOR_NAME, **hub_options))


def read_image_processor_config(path: Path) -> dict[str, Any]:
    from blip_core.config.json_files import read_config_json

    return read_config_json(path)


class BlipImageProcessor(ImageProcessorSettings):
    """Resize, rescale and normalise images for BLIP (`transformers.BlipImageProcessor`).

    >>> processor = BlipImageProcessor(size=32)
    >>> processor(np.zeros((40, 50, 3), np.uint8), return_tensors="np")["pixel_values"].shape
    (1, 3, 32, 32)
    """

    def preprocess(
        self,
        images: Any,
        return_tensors: Any = None,
        input_data_format: str | None = None,
        data_format: Any = "channels_first",
        **overrides: Any,
    ) -> BatchFeature:
        """Process one image or a list; `overrides` are any of the constructor's settings.

        Returns `pixel_values`: float32 (B, 3, H, W) (a list of (3, H, W) when `return_tensors` is None;
        channels last with `data_format="channels_last"`); `[]` gives a batch of 0 images.
        Raises ValueError (or its subclasses in `image_loading`) naming the bad image or argument.
        """
        tensor_type = check_tensor_type(return_tensors)
        unknown = sorted(set(overrides) - set(_OVERRIDES))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {unknown}; known: {list(_OVERRIDES)}")
        settings = self._settings(overrides)
        channels_first = parse_data_format(input_data_format)
        out_first = output_channels_first(data_format)
        items = as_image_list(images)
        arrays = [self._process_one(item, settings, channels_first, index) for index, item in enumerate(items)]
        arrays = [np.ascontiguousarray(np.transpose(a, (2, 0, 1)) if out_first else a) for a in arrays]
        if tensor_type is None:
            return BatchFeature({"pixel_values": arrays})
        if not arrays:
            as_float = settings["do_rescale"] or settings["do_normalize"]
            empty = empty_pixels(settings["size"], out_first, as_float)
            return BatchFeature({"pixel_values": to_framework(empty, tensor_type)})
        shapes = {array.shape for array in arrays}
        if len(shapes) > 1:
            raise ValueError(
                f"images have different sizes {sorted(shapes)} and cannot be stacked; "
                "keep do_resize=True or pass images of one size"
            )
        return BatchFeature({"pixel_values": to_framework(np.stack(arrays), tensor_type)})

    def _process_one(self, item: Any, settings: dict[str, Any], channels_first: bool | None, index: int) -> np.ndarray:
        """One image as H x W x 3: float32 after rescale/normalise, else the dtype it had (uint8)."""
        name = f"#{index} ({describe(item)})"
        image = to_pil_or_array(item)
        if isinstance(image, PIL.Image.Image):
            image = pil_to_8bit(decode_pil(image, name))
            if settings["do_convert_rgb"] and image.mode != "RGB":
                image = to_rgb(image, name)
            image = np.array(image)
            channels_first = False
        array = array_to_8bit(to_rgb_hwc(np.asarray(image), channels_first, name))
        if settings["do_rescale"] and array.dtype != np.uint8 and array.size and 0 <= array.min() and array.max() <= 1:
            warnings.warn(
                f"image {name} already looks rescaled to [0, 1]; with do_rescale=True it is "
                "divided by 255 again (pass do_rescale=False)",
                stacklevel=5,
            )
        if settings["do_resize"]:
            array = resize(array, settings["size"], settings["resample"], name)
        if settings["do_rescale"]:
            array = rescale(array, settings["rescale_factor"])
        if settings["do_normalize"]:
            array = normalize(array, settings["image_mean"], settings["image_std"])
        if settings["do_rescale"] or settings["do_normalize"]:
            array = array.astype(np.float32, copy=False)
        return array


def parse_data_format(value: str | None) -> bool | None:
    formats = {None: None, "channels_first": True, "channels_last": False}
    value = getattr(value, "value", value)
    if value not in formats:
        raise ValueError(f"input_data_format must be 'channels_first', 'channels_last' or None, got {value!r}")
    return formats[value]


def _is_framework_batch(images: Any) -> bool:
    module = type(images).__module__.split(".", 1)[0]
    return module in ("torch", "tensorflow", "jax", "jaxlib") and len(getattr(images, "shape", ())) == 4


def as_image_list(images: Any) -> list[Any]:
    """One image, a list (nested lists flattened) or a 4-D batch as a list of images; `[]` stays `[]`."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if _is_framework_batch(images):
        return [images[i] for i in range(int(images.shape[0]))]
    if images is None:
        raise ValueError("images is None; expected an image, a path, a URL or a list of these")
    items = flatten_images(images)
    if any(item is None for item in items):
        raise ValueError("images contain None; expected an image, a path or a URL for each item")
    return items
