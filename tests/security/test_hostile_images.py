"""Hostile image files: decompression bombs and huge declared sizes are refused before decoding, animated
images decode their first frame only, truncated files are a clear error naming the file."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from blip_core import BlipImageProcessor, BlipImageProcessorFast
from blip_core.processing.image_loading import (
    ImageLoadError,
    ImageTooLargeError,
    UnreadableImageError,
    load_image,
    to_pil_or_array,
)

LOADERS = {
    "to_pil_or_array": to_pil_or_array,  # paths, URLs, base64, bytes and binary files (load_image behind it)
    "BlipImageProcessor": lambda source: BlipImageProcessor(size=8)(source, return_tensors="np"),
    "BlipImageProcessorFast": lambda source: BlipImageProcessorFast(size=8)(source, return_tensors="np"),
}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A valid grayscale PNG of width x height zeros: a few hundred kB for 144 Mpx (built row by row)."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """The issue's case: a 12000 x 12000 PNG (144 Mpx, 1.4 GB as float32 RGB) in a tiny file.

    Pillow only warns between MAX_IMAGE_PIXELS (89,478,485) and twice that: it would decode it."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(png_bomb(12000, 12000))
    assert path.stat().st_size < 200_000
    with PIL.Image.open(path) as image:  # a real, readable image: only its size is hostile
        assert image.size == (12000, 12000)
    return path


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("given_as", ["path", "str", "bytes", "file", "lazy_pil"])
def test_decompression_bomb_is_refused_before_decoding(bomb, loader, given_as):
    if given_as == "lazy_pil" and loader == "to_pil_or_array":
        pytest.skip("a PIL image is passed through, decoded by the processors")
    source = {
        "path": lambda: bomb,
        "str": lambda: str(bomb),
        "bytes": lambda: bomb.read_bytes(),
        "file": lambda: open(bomb, "rb"),  # noqa: SIM115 (closed below)
        "lazy_pil": lambda: PIL.Image.open(bomb),
    }[given_as]()
    try:
        with pytest.raises(ImageTooLargeError) as info:
            LOADERS[loader](source)
    finally:
        if hasattr(source, "close"):
            source.close()
    message = str(info.value)
    assert "12000x12000 = 144,000,000 pixels" in message and "89,478,485" in message
    assert "PIL.Image.MAX_IMAGE_PIXELS" in message
    if given_as in ("path", "str", "file"):
        assert "bomb.png" in message
    error = info.value
    assert isinstance(error, ValueError) and isinstance(error, PIL.Image.DecompressionBombError)
    assert isinstance(error, ImageLoadError)


def test_a_header_past_twice_the_limit_is_refused_by_pillow_as_well(tmp_path):
    path = tmp_path / "huge.png"
    header = struct.pack(">IIBBBBB", 65535, 65535, 8, 2, 0, 0, 0)  # 4.3 Gpx RGB, no pixel data at all
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IEND", b""))
    for loader in LOADERS.values():
        with pytest.raises(ImageTooLargeError, match="huge.png"):
            loader(path)


def test_the_pixel_limit_is_pillows_setting(tmp_path, monkeypatch):
    """`PIL.Image.MAX_IMAGE_PIXELS` is the limit, as an error at the limit itself; None removes it."""
    path = tmp_path / "small.png"
    PIL.Image.new("RGB", (100, 50), (1, 2, 3)).save(path)
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 5000)
    assert load_image(path).size == (100, 50)  # exactly at the limit
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 4999)
    for loader in LOADERS.values():
        with pytest.raises(ImageTooLargeError, match=r"100x50 = 5,000 pixels, more than the limit of 4,999"):
            loader(path)
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", None)
    assert np.asarray(load_image(path))[0, 0].tolist() == [1, 2, 3]


def _frames(count: int, size: tuple[int, int] = (16, 12)) -> list[PIL.Image.Image]:
    return [PIL.Image.new("RGB", size, (10 * i % 256, 200, 255 - i % 256)) for i in range(count)]


def _animated(fmt: str, count: int) -> bytes:
    buffer = io.BytesIO()
    frames = _frames(count)
    frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:], duration=10, lossless=True)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_images_give_their_first_frame(fmt):
    data = _animated(fmt, 40)
    with PIL.Image.open(io.BytesIO(data)) as image:
        assert getattr(image, "n_frames", 1) == 40
    first = np.asarray(to_pil_or_array(data))
    assert np.abs(first.astype(int) - np.asarray(_frames(1)[0]).astype(int)).max() <= 2
    for loader in ("BlipImageProcessor", "BlipImageProcessorFast"):
        pixels = LOADERS[loader](data)["pixel_values"]
        assert pixels.shape == (1, 3, 8, 8) and np.isfinite(pixels).all()


@pytest.mark.parametrize("fmt", ["GIF", "PNG"])
def test_frames_after_the_first_are_never_decoded(fmt):
    """Later frames cut off: decoding them would fail, so the first frame loading proves they are not read."""
    full = _animated(fmt, 3)
    single = len(_animated(fmt, 1))
    cut = full[: single + (len(full) - single) // 4]  # well inside the second frame
    with PIL.Image.open(io.BytesIO(cut)) as image:
        with pytest.raises(Exception):  # noqa: B017, PT011 (Pillow raises OSError, EOFError or IndexError)
            image.seek(2)
            image.load()
    assert np.asarray(to_pil_or_array(cut)).shape == (12, 16, 3)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_files_name_the_file(tmp_path, fmt, keep):
    buffer = io.BytesIO()
    pixels = np.random.RandomState(0).randint(0, 256, (64, 80, 3), np.uint8)
    PIL.Image.fromarray(pixels).save(buffer, fmt)
    data = buffer.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: int(len(data) * keep)])
    for loader in LOADERS.values():
        with pytest.raises(UnreadableImageError, match=f"cut.{fmt.lower()}") as info:
            loader(path)
        assert isinstance(info.value, ValueError) and isinstance(info.value, OSError)
