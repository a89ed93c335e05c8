"""Unreadable image inputs, shared by `tests/tools/make_image_error_golden.py` and the tests.

`build(name, folder, server)` makes the input of one case: a path, a URL of
the local `ImageServer` (loopback only, no network), a data URI or a lazily
opened PIL image whose decoding fails. The golden records which exception
types `transformers` 4.57.6 raises for each; blip-dual must raise all of them
and `ValueError`.
"""

from __future__ import annotations

import base64
import http.server
import io
import socket
import threading
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from tests.helpers.images import base_rgb

# name -> how the input is used: "load" (load_image / a path or URL given to a processor) or "pil" (an object)
CASES = {
    "not_an_image": "load",
    "empty_file": "load",
    "truncated_png": "load",
    "truncated_jpeg": "load",
    "missing_file": "load",
    "directory": "load",
    "not_base64_text": "load",
    "garbage_base64": "load",
    "url_refused": "load",
    "url_404": "load",
    "url_not_an_image": "load",
    "url_invalid": "load",
    "decompression_bomb": "load",
    "lazy_truncated_pil": "pil",
}
BOMB_PIXEL_LIMIT = 100  # PIL.Image.MAX_IMAGE_PIXELS while the bomb case runs; its image has 4096 pixels


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(base_rgb(seed=3)).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(np.random.RandomState(0).randint(0, 256, (200, 200, 3), np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/page.html":
            body, status, kind = b"<html><body>not an image</body></html>", 200, "text/html"
        elif self.path == "/cat.png":
            body, status, kind = _png_bytes(), 200, "image/png"
        else:
            body, status, kind = b"<html>Not Found</html>", 404, "text/html"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class ImageServer:
    """A loopback HTTP server: /cat.png is a PNG, /page.html a web page, anything else 404."""

    def __enter__(self) -> ImageServer:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def build(name: str, folder: Path, server: ImageServer) -> Any:
    """The input of case `name`; files are written under `folder`."""
    if name in ("not_an_image", "empty_file", "truncated_png", "truncated_jpeg", "decompression_bomb"):
        payload = {
            "not_an_image": b"not an image at all",
            "empty_file": b"",
            "truncated_png": _png_bytes()[: len(_png_bytes()) // 2],
            "truncated_jpeg": _jpeg_bytes()[:3000],
            "decompression_bomb": None,
        }[name]
        path = folder / f"{name}.{'jpg' if 'jpeg' in name else 'png'}"
        if payload is None:
            PIL.Image.new("RGB", (64, 64), (10, 20, 30)).save(path)
        else:
            path.write_bytes(payload)
        return str(path)
    if name == "missing_file":
        return str(folder / "no_such_image.png")
    if name == "directory":
        (folder / "a_folder").mkdir(exist_ok=True)
        return str(folder / "a_folder")
    if name == "not_base64_text":
        return "cat"
    if name == "garbage_base64":
        return "data:image/png;base64," + base64.b64encode(b"garbage bytes, no image " * 4).decode()
    if name == "url_refused":
        return f"http://127.0.0.1:{free_port()}/cat.png"
    if name == "url_404":
        return server.base + "/missing.png"
    if name == "url_not_an_image":
        return server.base + "/page.html"
    if name == "url_invalid":
        return "http://[::1"
    if name == "lazy_truncated_pil":
        path = folder / "lazy.png"
        path.write_bytes(_png_bytes()[: len(_png_bytes()) // 2])
        return PIL.Image.open(path)
    raise KeyError(name)
