"""Unreadable images raise the types `transformers` 4.57.6 raises (golden) and ValueError, naming the input."""

from __future__ import annotations

import importlib
import pickle
import sys

import PIL.Image
import pytest

from blip_core import BlipImageProcessor, BlipImageProcessorFast
from blip_core.processing import image_loading, image_urls
from blip_core.processing.image_loading import (
    ImageDownloadError,
    ImageHTTPError,
    ImageNotFoundError,
    ImageTooLargeError,
    UnreadableImageError,
    load_image,
)
from tests.helpers.golden import load_json
from tests.helpers.image_error_cases import BOMB_PIXEL_LIMIT, CASES, ImageServer, build, free_port

pytestmark = pytest.mark.usefixtures("image_urls_allowed")  # the URL cases fetch from a local server

GOLDEN = load_json("image_errors.json")["cases"]
# The blip-dual class each case raises (all of them ValueErrors).
OURS = {
    "not_an_image": UnreadableImageError,
    "empty_file": UnreadableImageError,
    "truncated_png": UnreadableImageError,
    "truncated_jpeg": UnreadableImageError,
    "missing_file": ImageNotFoundError,
    "directory": ImageNotFoundError,
    "not_base64_text": ImageNotFoundError,
    "garbage_base64": UnreadableImageError,
    "url_refused": ImageDownloadError,
    "url_404": ImageHTTPError,
    "url_not_an_image": UnreadableImageError,
    "url_invalid": ImageDownloadError,
    "decompression_bomb": ImageTooLargeError,
    "lazy_truncated_pil": UnreadableImageError,
}
LOADERS = {
    "load_image": load_image,
    "BlipImageProcessor": lambda source: BlipImageProcessor(size=8)(source),
    "BlipImageProcessorFast": lambda source: BlipImageProcessorFast(size=8)(source),
}
# load_image takes paths, URLs and base64; the lazily opened PIL image goes through the processors only.
PAIRS = [
    (name, loader)
    for name in sorted(CASES)
    for loader in sorted(LOADERS)
    if CASES[name] == "load" or loader != "load_image"
]


def resolve(qualified: str) -> type:
    module, _, name = qualified.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.fixture(scope="module")
def server():
    with ImageServer() as running:
        yield running


def test_golden_covers_every_case():
    assert set(GOLDEN) == set(CASES) == set(OURS)


@pytest.mark.parametrize("name,loader", PAIRS)
def test_error_has_every_transformers_type_and_value_error(name, loader, tmp_path, server, monkeypatch):
    if name == "decompression_bomb":
        monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", BOMB_PIXEL_LIMIT)
    source = build(name, tmp_path, server)
    with pytest.raises(OURS[name]) as info:
        LOADERS[loader](source)
    error = info.value
    for qualified in GOLDEN[name]["types"]:
        assert isinstance(error, resolve(qualified)), f"{type(error).__mro__} lacks {qualified}"
    assert isinstance(error, ValueError)
    named = source if isinstance(source, str) else "PIL image"
    assert named[:60] in str(error) or (name == "garbage_base64" and "base64" in str(error)), str(error)


def test_classes_are_the_documented_types():
    assert issubclass(UnreadableImageError, PIL.UnidentifiedImageError) and issubclass(UnreadableImageError, OSError)
    assert issubclass(ImageNotFoundError, FileNotFoundError)
    assert issubclass(ImageTooLargeError, PIL.Image.DecompressionBombError)
    assert issubclass(ImageHTTPError, UnreadableImageError) and issubclass(ImageHTTPError, ImageDownloadError)
    for cls in (UnreadableImageError, ImageNotFoundError, ImageTooLargeError, ImageDownloadError, ImageHTTPError):
        assert issubclass(cls, ValueError) and issubclass(cls, image_loading.ImageLoadError)


def test_missing_file_carries_errno(tmp_path):
    import errno

    with pytest.raises(FileNotFoundError) as info:
        load_image(tmp_path / "nothing.png")
    assert info.value.errno == errno.ENOENT and "nothing.png" in str(info.value)


def test_errors_pickle_for_worker_processes(tmp_path):
    """DataLoader workers send exceptions between processes; the requests-typed classes must pickle too."""
    requests = pytest.importorskip("requests")
    url = f"http://127.0.0.1:{free_port()}/x.png"
    with pytest.raises(requests.exceptions.ConnectionError) as info:
        load_image(url)
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is type(info.value) and str(again) == str(info.value)
    assert isinstance(again, requests.exceptions.ConnectionError) and isinstance(again, ValueError)
    with pytest.raises(UnreadableImageError) as info:
        load_image(str(build("not_an_image", tmp_path, None)))
    assert isinstance(pickle.loads(pickle.dumps(info.value)), PIL.UnidentifiedImageError)


def test_without_requests_urllib_keeps_the_types(monkeypatch, server):
    monkeypatch.setitem(sys.modules, "requests", None)
    with pytest.raises(ImageHTTPError, match="HTTP 404") as info:
        load_image(server.base + "/missing.png")
    assert isinstance(info.value, PIL.UnidentifiedImageError) and isinstance(info.value, ValueError)
    with pytest.raises(ImageDownloadError) as info:
        load_image(f"http://127.0.0.1:{free_port()}/x.png")
    assert isinstance(info.value, OSError) and isinstance(info.value, ValueError)
    assert load_image(server.base + "/cat.png").size == (53, 37)


def test_url_is_fetched_through_the_local_server(server):
    image = load_image(server.base + "/cat.png")
    assert image.mode == "RGB" and image.size == (53, 37)


def test_a_program_that_skips_unidentified_images_keeps_going(tmp_path, server):
    """The public captioning-tool pattern: `except UnidentifiedImageError: continue`."""
    good = tmp_path / "good.png"
    PIL.Image.new("RGB", (9, 7), (1, 2, 3)).save(good)
    inputs = [str(build("not_an_image", tmp_path, server)), str(good), server.base + "/missing.png", str(good)]
    processed = []
    for source in inputs:
        try:
            processed.append(BlipImageProcessor(size=8)(source, return_tensors="np")["pixel_values"].shape)
        except PIL.UnidentifiedImageError:
            continue
    assert processed == [(1, 3, 8, 8), (1, 3, 8, 8)]


def test_timeout_reaches_the_download(monkeypatch):
    """transformers' pipelines pass `timeout` to load_image; it bounds the wait for a URL."""
    requests = pytest.importorskip("requests")
    seen = {}

    def slow_server(url, timeout, headers, **kwargs):
        seen["timeout"] = timeout
        raise requests.exceptions.ReadTimeout("read timed out")

    monkeypatch.setattr(requests, "get", slow_server)
    with pytest.raises(requests.exceptions.Timeout) as info:
        image_loading.to_pil_or_array("https://example.com/slow.jpg", timeout=2.5)
    assert seen["timeout"] == 2.5 and isinstance(info.value, ImageDownloadError) and "slow.jpg" in str(info.value)
    with pytest.raises(ImageDownloadError):
        load_image("https://example.com/slow.jpg")
    assert seen["timeout"] == image_urls.URL_TIMEOUT_S


def test_encoded_images_load_like_their_files(tmp_path):
    """Bytes and binary file objects are opened as the file they hold; a text file object is unreadable."""
    import io

    import numpy as np

    path = tmp_path / "a.png"
    PIL.Image.new("RGB", (9, 7), (10, 200, 30)).save(path)
    reference = np.asarray(load_image(path))
    processor = BlipImageProcessor(size=8)
    for given in (path.read_bytes(), io.BytesIO(path.read_bytes()), open(path, "rb")):  # noqa: SIM115
        assert np.array_equal(np.asarray(image_loading.to_pil_or_array(given)), reference)
        assert processor(given, return_tensors="np")["pixel_values"].shape == (1, 3, 8, 8)
    with pytest.raises(UnreadableImageError), io.StringIO("not an image") as text:
        image_loading.to_pil_or_array(text)
