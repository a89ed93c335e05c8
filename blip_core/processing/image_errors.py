"""The errors of image inputs: each a `ValueError` and the type `transformers` lets through for the same input
(see `image_loading`), and `ImageDownload<X>`, an `ImageDownloadError` that is also `requests.exceptions.<X>`."""

from __future__ import annotations

import errno
import importlib

import PIL.Image

REQUESTS_PREFIX = "ImageDownload"
class ImageLoadError(ValueError):
    """Base of every error about an image input (a `ValueError`)."""


class UnreadableImageError(PIL.UnidentifiedImageError, ImageLoadError):
    """The bytes are not a readable image: not an image, corrupt or truncated (also an `OSError`)."""


class ImageNotFoundError(FileNotFoundError, ImageLoadError):
    """A string or path that names no file and is neither an http(s) URL nor base64 (errno ENOENT)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = errno.ENOENT


class ImageTooLargeError(PIL.Image.DecompressionBombError, ImageLoadError):
    """Pillow's decompression-bomb guard refused the image (`PIL.Image.MAX_IMAGE_PIXELS`)."""


class ImageDownloadError(OSError, ImageLoadError):
    """An http(s) URL could not be fetched."""


class ImageHTTPError(ImageDownloadError, UnreadableImageError):
    """The server answered with an HTTP error status instead of an image."""


def __getattr__(name: str) -> type:
    """`ImageDownload<X>`: `ImageDownloadError` that is also `requests.exceptions.<X>`, made on first use.

    Module-level, so that such errors pickle (DataLoader workers send exceptions between processes).
    """
    base_name = name[len(REQUESTS_PREFIX) :] if name.startswith(REQUESTS_PREFIX) else ""
    try:
        base = getattr(importlib.import_module("requests.exceptions"), base_name) if base_name else None
    except ImportError:
        base = None
    if not (isinstance(base, type) and issubclass(base, OSError)):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    cls = type(name, (base, ImageDownloadError), {"__module__": __name__, "__qualname__": name})
    globals()[name] = cls
    return cls


def download_error(err: Exception, url: str) -> ImageDownloadError:
    """An `ImageDownloadError` for `err`, of `err`'s own `requests` type when it has one."""
    reason = getattr(err, "reason", err)
    message = f"cannot download image from {url!r}: {reason}"
    kind = type(err)
    if kind.__module__.startswith("requests") and issubclass(kind, OSError):
        name = REQUESTS_PREFIX + kind.__name__
        try:
            return (globals().get(name) or __getattr__(name))(message)
        except AttributeError:  # a subclass defined outside requests.exceptions
            pass
    return ImageDownloadError(message)


def http_error(url: str, status: int, reason: str) -> ImageHTTPError:
    return ImageHTTPError(f"cannot download image from {url!r}: the server answered HTTP {status} {reason}".rstrip())
