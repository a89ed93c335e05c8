"""Bring every accepted image input to a PIL image or a NumPy array.

Paths, URLs and data URIs are opened as `transformers.image_utils.load_image`
opens them (EXIF-transposed, then converted to RGB); PIL objects and arrays
are passed through. Pillow's decompression-bomb guard stays on.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps

URL_TIMEOUT_S = 30.0
_BASE64_MIN_LENGTH = 64


def describe(image: Any) -> str:
    """A short human description of an input for error messages."""
    if isinstance(image, (str, Path)):
        text = str(image)
        return repr(text if len(text) <= 80 else text[:77] + "...")
    if isinstance(image, np.ndarray):
        return f"a NumPy array of shape {image.shape} and dtype {image.dtype}"
    if isinstance(image, PIL.Image.Image):
        return f"a PIL image of mode {image.mode} and size {image.size}"
    return f"an object of type {type(image).__name__}"


def _open(source: Any, name: str) -> PIL.Image.Image:
    try:
        image = PIL.Image.open(source)
        image.load()
    except PIL.Image.DecompressionBombError as err:
        raise ValueError(f"image {name} is refused as a decompression bomb: {err}") from None
    except (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"image {name} cannot be read as an image: {err}") from None
    return PIL.ImageOps.exif_transpose(image).convert("RGB")


def _download(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "blip-dual"})
    try:
        with urllib.request.urlopen(request, timeout=URL_TIMEOUT_S) as response:
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise ValueError(f"cannot download image from {url!r}: {reason}") from None


def _decode_base64(text: str) -> bytes | None:
    payload = text.split(",", 1)[1] if text.startswith("data:image/") and "," in text else text
    if len(payload) < _BASE64_MIN_LENGTH and not text.startswith("data:image/"):
        return None
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the OS, or with a NUL byte
        return False


def load_image(source: str | os.PathLike) -> PIL.Image.Image:
    """Open a path, an http(s) URL or a base64 / data-URI string as an RGB PIL image."""
    text = str(source)
    if text.startswith(("http://", "https://")):
        return _open(io.BytesIO(_download(text)), repr(text))
    path = Path(text).expanduser()
    if _is_file(path):
        return _open(path, str(path))
    if not isinstance(source, Path):
        data = _decode_base64(text)
        if data is not None:
            return _open(io.BytesIO(data), "given as base64")
    raise ValueError(f"image {describe(source)} is not an existing file, an http(s) URL or a base64 image")


def _from_framework_tensor(image: Any) -> np.ndarray | None:
    """torch / tensorflow / jax tensors to NumPy without importing their frameworks."""
    module = type(image).__module__.split(".", 1)[0]
    if module == "torch":
        return image.detach().cpu().numpy()
    if module in ("tensorflow", "jax", "jaxlib") or hasattr(image, "__array__"):
        return np.asarray(image)
    return None


def to_pil_or_array(image: Any) -> PIL.Image.Image | np.ndarray:
    """One input as a PIL image or a NumPy array; anything else is a ValueError."""
    if isinstance(image, (PIL.Image.Image, np.ndarray)):
        return image
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    array = _from_framework_tensor(image)
    if array is None:
        raise ValueError(
            f"cannot use {describe(image)} as an image: expected a PIL image, a NumPy array "
            "(HWC or CHW), a torch/tf tensor, a file path, an http(s) URL or a list of these"
        )
    return array


def flatten_images(images: Any) -> list[Any]:
    """Flatten nested lists/tuples of images into one list, keeping order."""
    if isinstance(images, (list, tuple)):
        flat: list[Any] = []
        for item in images:
            flat.extend(flatten_images(item))
        return flat
    return [images]
