"""Bring every accepted image input to a PIL image or a NumPy array, with catchable errors.

Paths, URLs and data URIs are opened as `transformers.image_utils.load_image`
opens them (EXIF-transposed, then converted to RGB), except that images of
more than 8 bits are scaled to 8 bits instead of clipped (`image_depth`).
PIL objects and arrays are passed through. Only the first frame of an
animated image is decoded. An image file declaring more than
`PIL.Image.MAX_IMAGE_PIXELS` pixels (89,478,485 unless changed; None: no
limit) is refused before decoding (Pillow itself only warns up to twice that).
URLs are fetched with bounds (schemes, timeouts, size): see `image_urls`. The error classes are
defined in `image_errors` and importable from here.

Every failure is a `ValueError` *and* the type `transformers` lets through
for the same input, so programs written for either keep working:

- not an image, corrupt, truncated: `UnreadableImageError`, also a
  `PIL.UnidentifiedImageError` and `OSError` (`transformers`: `UnidentifiedImageError`
  or, when truncated, `OSError`);
- a missing file, or a string that is no path, URL or base64: `ImageNotFoundError`,
  also a `FileNotFoundError` (`transformers`: `ValueError`);
- a decompression bomb (more pixels than `PIL.Image.MAX_IMAGE_PIXELS`): `ImageTooLargeError`,
  also a `PIL.Image.DecompressionBombError`;
- a URL not fetched (unreachable, too slow, too large, redirected to another scheme):
  `ImageDownloadError`, an `OSError`, and with `requests` installed the same `requests.exceptions`
  type `transformers` raises (`ConnectionError`, `Timeout`, `InvalidSchema`...);
- a URL answering an HTTP error: `ImageHTTPError`, also an `UnreadableImageError`
  (`transformers` tries to open the error page: `UnidentifiedImageError`).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps

from blip_core.processing.image_depth import pil_to_8bit
from blip_core.processing.image_errors import (  # the error classes are part of this module's interface
    ImageDownloadError as ImageDownloadError,
)
from blip_core.processing.image_errors import (
    ImageHTTPError as ImageHTTPError,
)
from blip_core.processing.image_errors import (
    ImageLoadError as ImageLoadError,
)
from blip_core.processing.image_errors import (
    ImageNotFoundError as ImageNotFoundError,
)
from blip_core.processing.image_errors import (
    ImageTooLargeError as ImageTooLargeError,
)
from blip_core.processing.image_errors import (
    UnreadableImageError as UnreadableImageError,
)

_BASE64_MIN_LENGTH = 64
_OTHER_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")  # file://, ftp://...: never fetched
def describe(image: Any) -> str:
    """A short human description of an input for error messages."""
    if isinstance(image, (str, Path)):
        text = str(image)  # a long one keeps its start and its end: a path's file name is at the end
        return repr(text if len(text) <= 120 else f"{text[:40]}...{text[-77:]}")
    if isinstance(image, np.ndarray):
        return f"a NumPy array of shape {image.shape} and dtype {image.dtype}"
    if isinstance(image, PIL.Image.Image):
        return f"a PIL image of mode {image.mode} and size {image.size}"
    module = type(image).__module__.split(".", 1)[0]
    if module in ("torch", "tensorflow", "jax", "jaxlib") and hasattr(image, "shape"):
        dtype = str(getattr(image, "dtype", "?")).replace("torch.", "").replace("<dtype: '", "").rstrip("'>")
        return f"a {module} tensor of shape {tuple(int(n) for n in image.shape)} and dtype {dtype}"
    return f"an object of type {type(image).__name__}"


def check_pixels(image: PIL.Image.Image, name: str) -> None:
    """Refuse an image declaring more than `PIL.Image.MAX_IMAGE_PIXELS` pixels, before decoding it.

    Pillow only warns up to twice that limit; here it is an error (`ImageTooLargeError`). Set
    `PIL.Image.MAX_IMAGE_PIXELS` higher, or to None, to accept larger images.
    """
    limit = PIL.Image.MAX_IMAGE_PIXELS
    width, height = image.size
    if limit is not None and width * height > limit:
        raise ImageTooLargeError(
            f"image {name} declares {width}x{height} = {width * height:,} pixels, more than the limit of "
            f"{int(limit):,} (PIL.Image.MAX_IMAGE_PIXELS): refused before decoding as a possible decompression "
            "bomb; raise PIL.Image.MAX_IMAGE_PIXELS (or set it to None) to accept it"
        )


def decode_pil(image: PIL.Image.Image, name: str) -> PIL.Image.Image:
    """Force a (lazily opened) PIL image to decode its first frame; failures become `UnreadableImageError`.

    An image not decoded yet is first checked against `PIL.Image.MAX_IMAGE_PIXELS` (`check_pixels`).
    """
    if getattr(image, "tile", None):  # still lazy: only its header has been read
        check_pixels(image, name)
    try:
        image.load()
    except PIL.Image.DecompressionBombError as err:
        raise ImageTooLargeError(f"image {name} is refused as a decompression bomb: {err}") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError) as err:
        raise UnreadableImageError(f"image {name} cannot be read as an image: {err}") from None
    return image


def to_rgb(image: PIL.Image.Image, name: str) -> PIL.Image.Image:
    """`image.convert("RGB")`; a mode Pillow cannot convert (e.g. `La`) is an `ImageLoadError` naming the image."""
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as err:
        raise ImageLoadError(f"image {name} of mode {image.mode} cannot be converted to RGB: {err}") from None


def _open(source: Any, name: str) -> PIL.Image.Image:
    """The first frame of an image file, EXIF-transposed, as RGB (frames after the first are never decoded)."""
    try:
        image = PIL.Image.open(source)
    except PIL.Image.DecompressionBombError as err:
        raise ImageTooLargeError(f"image {name} is refused as a decompression bomb: {err}") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError) as err:
        raise UnreadableImageError(f"image {name} cannot be read as an image: {err}") from None
    image = decode_pil(image, name)
    try:
        image = PIL.ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError) as err:
        raise UnreadableImageError(f"image {name} has unreadable EXIF data: {err}") from None
    return to_rgb(pil_to_8bit(image), name)


def _download(url: str, timeout: Any = None) -> bytes:
    """The body at an http(s) URL, within the bounds of `image_urls`."""
    from blip_core.processing.image_urls import fetch

    return fetch(url, timeout)


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


def _not_found(source: str | os.PathLike) -> ImageNotFoundError:
    path = Path(str(source)).expanduser()
    try:
        what = "is a directory, not an image file" if path.is_dir() else "is not an existing file"
    except (OSError, ValueError):
        what = "is not an existing file"
    return ImageNotFoundError(f"image {describe(source)} {what}, an http(s) URL or a base64 image")


def load_image(source: str | os.PathLike, timeout: Any = None) -> PIL.Image.Image:
    """Open a path, an http(s) URL or a base64 / data-URI string as an RGB PIL image (its first frame).

    `timeout`: seconds to wait for a URL (None: `URL_TIMEOUT_S`); URLs are fetched with the bounds
    of `image_urls`. Raises `ImageNotFoundError`, `UnreadableImageError`, `ImageTooLargeError` or
    `ImageDownloadError`: all `ValueError`s, and of the types listed in the module docstring.
    """
    text = str(source)
    if text.startswith(("http://", "https://")):
        return _open(io.BytesIO(_download(text, timeout)), repr(text))
    path = Path(text).expanduser()
    if _is_file(path):
        return _open(path, str(path))
    scheme = _OTHER_URL.match(text)
    if scheme and not isinstance(source, Path):
        raise ImageNotFoundError(
            f"image {describe(source)} is a {scheme.group(1)}: URL; only http:// and https:// URLs are fetched "
            "(pass a local file as a path)"
        )
    if not isinstance(source, Path):
        data = _decode_base64(text)
        if data is not None:
            return _open(io.BytesIO(data), f"given as base64 ({describe(text)})")
    raise _not_found(source)


def _from_framework_tensor(image: Any) -> np.ndarray | None:
    """torch / tensorflow / jax tensors to NumPy without importing their frameworks."""
    module = type(image).__module__.split(".", 1)[0]
    if module == "torch":
        return image.detach().cpu().numpy()
    if module in ("tensorflow", "jax", "jaxlib") or hasattr(image, "__array__"):
        return np.asarray(image)
    return None


def is_encoded_image(value: Any) -> bool:
    """An image still in its file format: bytes, or a binary file object (`open(path, "rb")`, `io.BytesIO`)."""
    return isinstance(value, (bytes, bytearray, memoryview, io.IOBase)) or callable(getattr(value, "read", None))


def to_pil_or_array(image: Any, timeout: float | None = None) -> PIL.Image.Image | np.ndarray:
    """One input as a PIL image or a NumPy array (`timeout`: for URLs); anything else is a ValueError."""
    if isinstance(image, (PIL.Image.Image, np.ndarray)):
        return image
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, timeout=timeout)
    if is_encoded_image(image):
        name = repr(getattr(image, "name", None) or f"given as {type(image).__name__}")
        return _open(io.BytesIO(bytes(image)) if isinstance(image, (bytes, bytearray, memoryview)) else image, name)
    array = _from_framework_tensor(image)
    if array is None:
        raise ValueError(
            f"cannot use {describe(image)} as an image: expected a PIL image, a NumPy array "
            "(HWC or CHW), a torch/tf tensor, a file path, an http(s) URL, image bytes or a binary file object, "
            "or a list of these"
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
