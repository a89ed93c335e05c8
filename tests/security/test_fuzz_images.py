"""Property-based fuzzing of the image processors (slow and fast) and the image file loader.

The property: finite float32 `pixel_values` of the expected shape, or a documented error (a `ValueError`;
from files an `ImageLoadError`) naming the input; never another exception type or a hang. Image files are
fuzzed under a small `PIL.Image.MAX_IMAGE_PIXELS`, so a mutated header claiming a huge size is refused,
never allocated. Modest example counts by default; `--run-slow` runs thousands per target.
"""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from blip_core import BlipImageProcessor, BlipImageProcessorFast
from blip_core.processing.image_loading import ImageLoadError, to_pil_or_array
from tests.security.fuzzing import fuzz_settings

DEFAULT_EXAMPLES = 60
SLOW_EXAMPLES = 3000
SIZE = 8
PROCESSORS = {
    "BlipImageProcessor": BlipImageProcessor(size=SIZE),
    "BlipImageProcessorFast": BlipImageProcessorFast(size=SIZE),
}
DTYPES = ["bool", "uint8", "int8", "uint16", "int16", "int32", "uint32", "int64", "uint64"]
DTYPES += ["float16", "float32", "float64"]
MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "I;16", "I;16B", "F", "LAB"]
MODES += ["HSV", "La", "RGBa"]
SIZES = st.one_of(
    st.tuples(st.integers(1, 40), st.integers(1, 40)),
    st.sampled_from([(1, 1), (1, 300), (300, 1), (65535, 1), (1, 65535)]),
)
FORMATS = ["PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP"]
FILE_PIXEL_LIMIT = 1 << 20  # PIL.Image.MAX_IMAGE_PIXELS while files are fuzzed: a 4 MB RGB image at most


@pytest.fixture
def examples(request) -> int:
    return SLOW_EXAMPLES if request.config.getoption("--run-slow") else DEFAULT_EXAMPLES


def _settings(examples: int):
    return fuzz_settings(examples, examples <= DEFAULT_EXAMPLES, HealthCheck.filter_too_much)


def _check(processor_name: str, images, count: int, documented: type[Exception] = ValueError) -> None:
    """Process `images` (expected to be `count` images); a documented error must name the image or argument."""
    try:
        pixels = PROCESSORS[processor_name](images, return_tensors="np")["pixel_values"]
    except documented as err:
        assert "image" in str(err).lower() or "size" in str(err).lower(), str(err)
        return
    assert isinstance(pixels, np.ndarray) and pixels.dtype == np.float32, type(pixels)
    assert pixels.shape == (count, 3, SIZE, SIZE) and np.isfinite(pixels).all()


# -- arrays -----------------------------------------------------------------------------------------------


def _special_values(dtype: np.dtype) -> st.SearchStrategy:
    if dtype.kind == "f":
        return st.sampled_from([0.0, 1.0, 0.5, 255.0, -1.0, 1e6, np.nan, np.inf, -np.inf, 65504.0])
    if dtype.kind == "b":
        return st.booleans()
    info = np.iinfo(dtype)
    return st.sampled_from([0, 1, 255, 256, 65535, int(info.max), int(info.min)]).filter(
        lambda v: info.min <= v <= info.max
    )


@st.composite
def arrays(draw) -> tuple[np.ndarray, int]:
    """(array, images it holds): any dtype, 0-d..5-d, zero-size dims, 1..5 channels first or last, strided."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    ndim = draw(st.one_of(st.sampled_from([2, 3, 3, 4]), st.integers(0, 5)))  # mostly image-like
    dims = draw(st.lists(st.one_of(st.integers(1, 12), st.just(0)), min_size=ndim, max_size=ndim))
    if ndim >= 3 and draw(st.integers(0, 3)):
        position = draw(st.sampled_from([0, ndim - 1]))
        dims[position] = draw(st.integers(1, 5))
    step = draw(st.sampled_from([1, 1, 2, -1]))
    shape = tuple(d * abs(step) for d in dims)
    elements = st.one_of(hnp.from_dtype(dtype, allow_nan=True, allow_infinity=True), _special_values(dtype))
    base = draw(hnp.arrays(dtype, shape, elements=elements, fill=elements))
    array = base[(slice(None, None, step),) * ndim] if ndim else base
    if ndim >= 2 and draw(st.booleans()):
        array = np.swapaxes(array, 0, 1)  # a non-contiguous view
    return array, (array.shape[0] if array.ndim == 4 else 1)


@pytest.mark.parametrize("processor", sorted(PROCESSORS))
def test_fuzz_arrays(examples, processor):
    @_settings(examples)
    @given(arrays())
    @example((np.zeros((4, 5, 3), np.float16), 1))
    @example((np.full((4, 5, 3), np.nan, np.float32), 1))
    @example((np.zeros((0, 8, 8, 3), np.uint8), 0))
    @example((np.zeros((2, 3, 0, 3), np.uint8), 2))
    @example((np.array(3.0), 1))
    @example((np.zeros((3, 6, 7), np.uint64)[:, ::-1, ::-2], 1))
    @example((np.full((5, 5, 3), np.iinfo(np.int64).min, np.int64), 1))
    @example((np.full((5, 5, 3), np.iinfo(np.uint64).max, np.uint64), 1))
    @example((np.array([[[-3.40282357e38]]]), 1))  # found: the fast processor gave -inf (float32 overflow)
    @example((np.array([[[-1.0, 3e38, 3e38]]] * 4, np.float32), 1))
    def run(case):
        array, count = case
        _check(processor, array, count)
        _check(processor, [array], 1) if array.ndim != 4 else None

    run()


# -- PIL images --------------------------------------------------------------------------------------------


@st.composite
def pil_images(draw) -> PIL.Image.Image:
    """A PIL image of any mode and size (1x1, 1xN, 65535x1 ...), random pixels, P with or without transparency."""
    mode = draw(st.sampled_from(MODES))
    width, height = draw(SIZES)
    seed = draw(st.integers(0, 2**32 - 1))
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 4), np.uint8)
    image = PIL.Image.fromarray(noise, "RGBA")
    if mode in ("I", "I;16", "I;16B", "F"):
        scale = draw(st.sampled_from([1, 257, 1000, 1 / 255]))
        values = noise[..., 0].astype(np.float64) * scale
        image = PIL.Image.fromarray(values.astype(np.float32)).convert(mode) if mode != "F" else None
        image = image or PIL.Image.fromarray(values.astype(np.float32), "F")
    elif mode in ("P", "PA"):
        image = image.convert("RGB").quantize(draw(st.integers(1, 256))) if mode == "P" else image.convert("PA")
        if mode == "P" and draw(st.booleans()):
            image.info["transparency"] = draw(st.integers(0, 255))
    elif mode in ("LAB", "HSV", "La"):
        image = PIL.Image.frombytes(mode, (width, height), noise[..., : len(mode)].tobytes())
    else:
        image = image.convert(mode)
    return image


@pytest.mark.parametrize("processor", sorted(PROCESSORS))
def test_fuzz_pil_images(examples, processor):
    @_settings(examples)
    @given(pil_images())
    @example(PIL.Image.new("La", (3, 2)))
    @example(PIL.Image.new("RGB", (65535, 1)))
    @example(PIL.Image.new("F", (1, 1), float("nan")))
    def run(image):
        _check(processor, image, 1)

    run()


# -- image files -------------------------------------------------------------------------------------------


def _encode(image: PIL.Image.Image, fmt: str, orientation: int | None, frames: int) -> bytes:
    buffer = io.BytesIO()
    if fmt in ("JPEG", "BMP") and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    if fmt == "WEBP" and image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA")
    options = {}
    if orientation is not None and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        exif = PIL.Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif
    if frames > 1 and fmt in ("PNG", "GIF", "WEBP", "TIFF"):
        rotated = [image.rotate(90 * i) for i in range(1, frames)]
        options.update(save_all=True, append_images=rotated)
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@st.composite
def image_files(draw) -> bytes:
    """Encoded images of any format with EXIF orientations and frames, then truncated, bit-flipped or spliced."""
    mode = draw(st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"]))
    width, height = draw(st.tuples(st.integers(1, 24), st.integers(1, 24)))
    fmt = draw(st.sampled_from(FORMATS))
    noise = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, 256, (height, width, 3), np.uint8)
    image = PIL.Image.fromarray(noise).convert(mode if mode not in ("I;16", "I", "F") else "L")
    if mode in ("I;16", "I", "F"):
        image = image.convert("I" if mode == "I;16" and fmt != "PNG" else mode) if fmt in ("PNG", "TIFF") else image
    orientation = draw(st.one_of(st.none(), st.integers(0, 9)))
    try:
        data = bytearray(_encode(image, fmt, orientation, draw(st.integers(1, 3))))
    except (OSError, ValueError, KeyError, TypeError):
        data = bytearray(_encode(image.convert("RGB"), fmt, orientation, 1))
    edit = draw(st.sampled_from(["none", "truncate", "flip", "splice"]))
    if edit == "truncate":
        del data[draw(st.integers(0, len(data))) :]
    elif edit == "flip":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
    elif edit == "splice":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=64))
    return bytes(data)


def test_fuzz_image_files(examples, monkeypatch):
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", FILE_PIXEL_LIMIT)

    @_settings(examples)
    @given(image_files(), st.sampled_from(["load", *sorted(PROCESSORS)]))
    @example(b"\x89PNG\r\n\x1a\n", "load")
    @example(b"", "BlipImageProcessor")
    def run(data, target):
        if target == "load":
            try:
                image = to_pil_or_array(data)
            except ImageLoadError as err:
                assert "bytes" in str(err), str(err)  # names the input: "given as bytes"
                return
            assert image.mode == "RGB" and image.width * image.height <= FILE_PIXEL_LIMIT
            return
        _check(target, data, 1, ImageLoadError)

    run()
