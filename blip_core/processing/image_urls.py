"""Fetch an http(s) image URL with bounds: schemes, timeouts, body size, redirects.

`transformers.image_utils.load_image` calls `requests.get(url, timeout=timeout)`:
no timeout by default, the whole body in memory whatever its size, redirects
followed. Here, through `requests` when installed (else `urllib`):

- only `http://` and `https://`, also for every redirect (at most `URL_MAX_REDIRECTS`);
- `timeout` (default `URL_TIMEOUT_S`) bounds the connection and each read, and
  the whole download takes at most `URL_TOTAL_TIMEOUT_S` (plus one read);
- the body is streamed and refused once it passes `URL_MAX_BYTES` (a larger
  `Content-Length` is refused before reading); `gzip`/`deflate` bodies are
  inflated under the same bound.

The bounds are settings of this module, read at each call, e.g.
`blip_core.processing.image_urls.URL_MAX_BYTES = 200 * 2**20`. Errors are the
`ImageDownloadError`s of `image_errors` (`OSError` and `ValueError`, and the
`requests.exceptions` type `requests` would raise when it is installed).
"""

from __future__ import annotations

import http.client
import importlib
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from typing import Any

from blip_core.processing import image_errors

# The bounds, read at each call: change them here.
URL_TIMEOUT_S = 30.0  # connecting, and waiting for each read of the answer (`timeout=` overrides it)
URL_TOTAL_TIMEOUT_S = 300.0  # the whole download, however slowly the server sends it
URL_MAX_BYTES = 100 * 2**20  # the largest body read into memory (after gzip/deflate inflation)
URL_MAX_REDIRECTS = 10  # each to http(s) only


SCHEMES = ("http", "https")
_CHUNK = 1 << 16
_USER_AGENT = "blip-dual"
_HEADERS = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
_REDIRECTS = (301, 302, 303, 307, 308)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def _redirect_target(url: str, location: str) -> str:
    """The absolute URL a redirect's Location header names."""
    try:
        return urllib.parse.urljoin(url, location)
    except ValueError as err:
        raise _refusal("InvalidURL", f"image URL {url!r} redirects to an invalid URL {location!r}: {err}") from None


def _refusal(requests_type: str, message: str) -> image_errors.ImageDownloadError:
    """An `ImageDownloadError` that is also `requests.exceptions.<requests_type>` when requests is installed."""
    try:
        return getattr(image_errors, image_errors.REQUESTS_PREFIX + requests_type)(message)
    except AttributeError:
        return image_errors.ImageDownloadError(message)


def _timeouts(timeout: Any) -> float | tuple[float, float]:
    """Seconds for connecting and each read: a number or a (connect, read) pair, as `requests` takes them."""
    value = URL_TIMEOUT_S if timeout is None else timeout
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ValueError(f"timeout must be a positive number of seconds or a (connect, read) pair, got {timeout!r}")
    return (float(pair[0]), float(pair[1])) if isinstance(value, (tuple, list)) else float(value)


def _check_scheme(url: str, original: str) -> None:
    scheme = _SCHEME.match(url)
    if scheme is None or scheme.group(1).lower() not in SCHEMES:
        where = f"image URL {original!r}" + (f" redirects to {url!r}" if url != original else f" {url!r}")
        raise _refusal("InvalidSchema", f"{where}: only http and https URLs are fetched")


class _Body:
    """Collects a streamed body (inflating gzip/deflate) and refuses it past `URL_MAX_BYTES` or the deadline."""

    def __init__(self, url: str, encoding: str, length: str | None, deadline: float) -> None:
        self.url, self.deadline, self.limit = url, deadline, URL_MAX_BYTES
        self.parts: list[bytes] = []
        self.size = 0
        encoding = encoding.strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise _refusal("ContentDecodingError", f"image URL {url!r}: unsupported Content-Encoding {encoding!r}")
        self.inflater = None if encoding in ("", "identity") else zlib.decompressobj(47 if "gzip" in encoding else 15)
        if encoding in ("", "identity") and length is not None and length.strip().isdigit():
            self._check_size(int(length.strip()))

    def _check_size(self, size: int) -> None:
        if size > self.limit:
            raise image_errors.ImageDownloadError(
                f"image URL {self.url!r} answers more than {self.limit:,} bytes "
                "(blip_core.processing.image_urls.URL_MAX_BYTES): refused"
            )

    def add(self, chunk: bytes) -> None:
        if self.inflater is not None:
            try:
                chunk = self.inflater.decompress(chunk, self.limit - self.size + 1)
            except zlib.error as err:
                raise _refusal("ContentDecodingError", f"image URL {self.url!r}: bad compressed body: {err}") from None
        self.size += len(chunk)
        self._check_size(self.size)
        self.parts.append(chunk)
        if time.monotonic() > self.deadline:
            raise _refusal(
                "ReadTimeout",
                f"image URL {self.url!r} took more than {URL_TOTAL_TIMEOUT_S:g} s to download "
                "(blip_core.processing.image_urls.URL_TOTAL_TIMEOUT_S)",
            )

    def read_all(self, read1: Callable[[int], bytes]) -> bytes:
        while chunk := read1(_CHUNK):
            self.add(chunk)
        return b"".join(self.parts)


def _with_requests(
    requests: Any, url: str, timeouts: float | tuple[float, float], deadline: float
) -> tuple[Any, bytes]:
    """One request through `requests`: (redirect target or None, body)."""
    try:
        response = requests.get(url, timeout=timeouts, headers=_HEADERS, stream=True, allow_redirects=False)
    except requests.exceptions.RequestException as err:
        raise image_errors.download_error(err, url) from None
    with response:
        if response.status_code in _REDIRECTS and "location" in response.headers:
            return _redirect_target(url, response.headers["location"]), b""
        if response.status_code >= 400:
            raise image_errors.http_error(url, response.status_code, response.reason or "")
        headers = response.headers
        body = _Body(url, headers.get("content-encoding", ""), headers.get("content-length"), deadline)
        urllib3_errors = importlib.import_module("urllib3.exceptions")
        try:
            return None, body.read_all(lambda size: response.raw.read1(size, decode_content=False))
        except (OSError, urllib3_errors.HTTPError) as err:
            if isinstance(err, image_errors.ImageDownloadError):
                raise
            timed_out = "timed out" in str(err).lower()
            kind = requests.exceptions.ReadTimeout if timed_out else requests.exceptions.ConnectionError
            raise image_errors.download_error(kind(str(err)), url) from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the redirect answer comes back as an HTTPError, followed by `fetch` after its checks


def _with_urllib(url: str, timeouts: float | tuple[float, float], deadline: float) -> tuple[Any, bytes]:
    """One request through `urllib`: (redirect target or None, body)."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(
            urllib.request.Request(url, headers=_HEADERS),
            timeout=max(timeouts) if isinstance(timeouts, tuple) else timeouts,
        ) as response:
            body = _Body(
                url, response.headers.get("content-encoding", ""), response.headers.get("content-length"), deadline
            )
            return None, body.read_all(response.read1)
    except urllib.error.HTTPError as err:
        if err.code in _REDIRECTS and err.headers.get("location"):
            return _redirect_target(url, err.headers["location"]), b""
        raise image_errors.http_error(url, err.code, str(err.reason or "")) from None
    except image_errors.ImageDownloadError:
        raise
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as err:
        raise image_errors.download_error(err, url) from None


def fetch(url: str, timeout: Any = None) -> bytes:
    """The body at an http(s) `url`, bounded as the module docstring says.

    `timeout`: seconds (a number or a (connect, read) pair; None: `URL_TIMEOUT_S`). Raises `ImageDownloadError`
    (an `OSError` and `ValueError`; `ImageHTTPError` for an HTTP error status) naming the URL, also when
    `HF_HUB_OFFLINE` is set (nothing is fetched then).
    """
    from blip_core.io.hub import is_offline

    timeouts = _timeouts(timeout)
    if is_offline():  # offline means no socket at all, not only none to the Hub
        raise image_errors.ImageDownloadError(
            f"image URL {url!r} not fetched: HF_HUB_OFFLINE is set (offline mode opens no connection); "
            "pass a local file, bytes or a PIL image, or unset HF_HUB_OFFLINE"
        )
    deadline = time.monotonic() + URL_TOTAL_TIMEOUT_S
    try:
        requests = importlib.import_module("requests")
    except ImportError:
        requests = None
    current = url
    for _ in range(URL_MAX_REDIRECTS + 1):
        _check_scheme(current, url)
        if requests is not None:
            target, body = _with_requests(requests, current, timeouts, deadline)
        else:
            target, body = _with_urllib(current, timeouts, deadline)
        if target is None:
            return body
        current = target
    raise _refusal("TooManyRedirects", f"image URL {url!r} redirects more than {URL_MAX_REDIRECTS} times")
