"""Image URLs are fetched within bounds: http(s) only (redirects too), timeouts, a size cap, streamed.

A loopback HTTP server (no network) plays each hostile server; every case runs through `requests`
(as `transformers`) and through the `urllib` fallback. Offline mode opens no socket at all.
"""

from __future__ import annotations

import gzip
import http.server
import io
import socket
import sys
import threading
import time
from typing import Any

import numpy as np
import PIL.Image
import pytest

from blip_core import BlipImageProcessor, BlipImageProcessorFast
from blip_core.processing import image_urls
from blip_core.processing.image_loading import ImageDownloadError, ImageHTTPError, ImageNotFoundError, load_image

PNG = io.BytesIO()
PIL.Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(PNG, "PNG")
PNG_BYTES = PNG.getvalue()
BIG = 4096  # URL_MAX_BYTES while these tests run


def _send(handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    handler.send_response(status)
    for key, value in headers.items():
        handler.send_header(key.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        try:
            self._answer()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def _answer(self) -> None:
        path = self.path
        if path == "/cat.png":
            _send(self, 200, PNG_BYTES, Content_Length=str(len(PNG_BYTES)), Connection="close")
        elif path == "/big-declared":  # refused from its Content-Length, before the body is read
            _send(self, 200, b"\0" * (BIG + 1), Content_Length=str(BIG + 1), Connection="close")
        elif path == "/big-chunked":  # no length given: refused while streaming
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"400\r\n" + b"\0" * 1024 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/gzip-bomb":  # 10 MB of zeros in a few kB: inflated only up to the cap
            body = gzip.compress(b"\0" * 10_000_000)
            _send(self, 200, body, Content_Length=str(len(body)), Content_Encoding="gzip", Connection="close")
        elif path == "/gzip-cat":
            body = gzip.compress(PNG_BYTES)
            _send(self, 200, body, Content_Length=str(len(body)), Content_Encoding="gzip", Connection="close")
        elif path == "/drip":  # each byte in time, the whole never
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.05)
        elif path == "/silent":  # answers nothing for longer than the read timeout
            time.sleep(3)
            _send(self, 200, PNG_BYTES, Content_Length=str(len(PNG_BYTES)), Connection="close")
        elif path.startswith("/to/"):  # /to/<url>: a redirect there
            _send(self, 302, b"", Location=path[len("/to/") :], Content_Length="0", Connection="close")
        elif path.startswith("/loop"):
            _send(self, 302, b"", Location=f"/loop{len(path)}", Content_Length="0", Connection="close")
        else:
            body = b"<html>Not Found</html>"
            _send(self, 404, body, Content_Type="text/html", Content_Length=str(len(body)), Connection="close")

    def log_message(self, *args: Any) -> None:
        pass


pytestmark = pytest.mark.usefixtures("image_urls_allowed")  # tests fetch from a local server


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(params=["requests", "urllib"])
def client(request, monkeypatch):
    """Each case through `requests` and through the `urllib` fallback (requests made unimportable)."""
    if request.param == "urllib":
        monkeypatch.setitem(sys.modules, "requests", None)
    else:
        pytest.importorskip("requests")
    monkeypatch.setattr(image_urls, "URL_MAX_BYTES", BIG)
    return request.param


def _requests_type(name: str) -> type | None:
    if "requests" in sys.modules and sys.modules["requests"] is not None:
        return getattr(sys.modules["requests"].exceptions, name)
    return None


def test_a_small_image_is_fetched(server, client):
    image = load_image(f"{server}/cat.png")
    assert image.mode == "RGB" and np.array_equal(np.asarray(image), np.arange(48).reshape(4, 4, 3))
    assert np.array_equal(np.asarray(load_image(f"{server}/gzip-cat")), np.asarray(image))
    assert np.array_equal(np.asarray(load_image(f"{server}/to//cat.png")), np.asarray(image))


@pytest.mark.parametrize("path", ["/big-declared", "/big-chunked", "/gzip-bomb"])
def test_a_body_over_the_cap_is_refused(server, client, path):
    url = f"{server}{path}"
    with pytest.raises(ImageDownloadError, match=r"answers more than 4,096 bytes .*URL_MAX_BYTES") as info:
        load_image(url)
    assert url in str(info.value) and isinstance(info.value, OSError) and isinstance(info.value, ValueError)


def test_a_slow_body_hits_the_total_deadline(server, client, monkeypatch):
    monkeypatch.setattr(image_urls, "URL_TOTAL_TIMEOUT_S", 0.5)
    start = time.monotonic()
    with pytest.raises(ImageDownloadError, match=r"took more than 0.5 s to download .*URL_TOTAL_TIMEOUT_S") as info:
        load_image(f"{server}/drip", timeout=5)
    assert time.monotonic() - start < 10  # far below the 50 s the body would take: not a timing assertion
    expected = _requests_type("ReadTimeout")
    assert expected is None or isinstance(info.value, expected)


def test_a_silent_server_hits_the_read_timeout(server, client):
    with pytest.raises(ImageDownloadError, match="/silent") as info:
        load_image(f"{server}/silent", timeout=0.3)
    assert "timed out" in str(info.value).lower()
    expected = _requests_type("Timeout")
    assert expected is None or isinstance(info.value, expected)


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/cat.png", "data:image/png;base64,AAAA"])
def test_a_redirect_to_another_scheme_is_refused(server, client, target):
    url = f"{server}/to/{target}"
    with pytest.raises(ImageDownloadError, match="only http and https URLs are fetched") as info:
        load_image(url)
    assert url in str(info.value) and target in str(info.value)
    expected = _requests_type("InvalidSchema")
    assert expected is None or isinstance(info.value, expected)


def test_endless_redirects_are_refused(server, client):
    with pytest.raises(ImageDownloadError, match="redirects more than 10 times") as info:
        load_image(f"{server}/loop")
    expected = _requests_type("TooManyRedirects")
    assert expected is None or isinstance(info.value, expected)


def test_not_found_is_an_http_error(server, client):
    with pytest.raises(ImageHTTPError, match="HTTP 404"):
        load_image(f"{server}/missing.png")


@pytest.mark.parametrize("url", ["file:///etc/hostname", "ftp://127.0.0.1/cat.png", "gopher://127.0.0.1/x"])
def test_other_schemes_are_never_fetched(url, monkeypatch):
    attempts = _deny_sockets(monkeypatch)
    for load in (load_image, BlipImageProcessor(size=8), BlipImageProcessorFast(size=8)):
        with pytest.raises(ImageNotFoundError, match="only http:// and https:// URLs are fetched") as info:
            load(url)
        assert url in str(info.value) and isinstance(info.value, ValueError)
    assert attempts == []


@pytest.mark.parametrize("timeout", [0, -1, "5", (1, 2, 3), True])
def test_a_bad_timeout_is_a_value_error(timeout):
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        load_image("http://127.0.0.1:9/cat.png", timeout=timeout)


def _deny_sockets(monkeypatch) -> list[Any]:
    """Every way to open a network connection raises (and is recorded in the list returned)."""
    attempts: list[Any] = []

    def deny(*args, **kwargs):
        attempts.append(args[1:2] or args[:1])
        raise AssertionError(f"a socket was opened: {args!r}")

    for owner, name in (
        (socket.socket, "connect"),
        (socket.socket, "connect_ex"),
        (socket, "create_connection"),
        (socket, "getaddrinfo"),
    ):
        monkeypatch.setattr(owner, name, deny)
    return attempts


def test_offline_mode_opens_no_socket(small_models, tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1: a local folder loads in both frameworks, pipelines and processors without a socket,
    and a Hub id that is not cached fails with the offline error, not a connection attempt."""
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    import blip_tf
    import blip_torch
    from blip_core import BlipProcessor
    from blip_core.io.hub_errors import HubNotCachedError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    folder = small_models["BlipForConditionalGeneration"]
    image = np.random.RandomState(0).randint(0, 256, (20, 24, 3), np.uint8)
    path = tmp_path / "cat.png"
    PIL.Image.fromarray(image).save(path)
    attempts = _deny_sockets(monkeypatch)
    processor = BlipProcessor.from_pretrained(folder)
    assert processor(images=str(path), return_tensors="np")["pixel_values"].shape == (1, 3, 48, 48)
    BlipImageProcessor.from_pretrained(folder)
    BlipImageProcessorFast.from_pretrained(folder)
    for framework, model_class in (
        (blip_torch, "BlipForConditionalGeneration"),
        (blip_tf, "TFBlipForConditionalGeneration"),
    ):
        model = getattr(framework, model_class).from_pretrained(folder)
        assert type(model).__name__ == model_class
        captioner = framework.pipeline("image-to-text", model=str(folder))
        assert isinstance(captioner(str(path), max_new_tokens=3)[0]["generated_text"], str)
    with pytest.raises(HubNotCachedError):
        blip_torch.BlipForConditionalGeneration.from_pretrained("Salesforce/blip-image-captioning-base")
    with pytest.raises(HubNotCachedError):
        BlipProcessor.from_pretrained("Salesforce/blip-image-captioning-base")
    # an image URL is refused offline too, by name, before any connection
    with pytest.raises(OSError, match="HF_HUB_OFFLINE is set") as refused:
        load_image("http://127.0.0.1:9/cat.png")
    assert isinstance(refused.value, ValueError)
    with pytest.raises(OSError, match="not fetched"):
        processor(images="https://example.com/cat.png")
    assert attempts == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(AssertionError, match="a socket was opened"):  # the denial is live
        load_image("http://127.0.0.1:9/cat.png")
    assert attempts != []
