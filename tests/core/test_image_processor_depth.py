"""Images of more than 8 bits are scaled to 8 bits (blip_core.processing.image_depth), where transformers clips them.

The 8-bit level each input becomes is checked with hand-computed values, through the slow and the fast
processor and every input form (path, PIL, NumPy, torch, TF); the transformers goldens of the deep PIL
modes are shown to be the clipped images, so that difference is deliberate and pinned.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from blip_core import BlipImageProcessor, BlipImageProcessorFast
from blip_core.processing.image_loading import load_image
from tests.helpers.fast_processor_cases import tensor
from tests.helpers.golden import load_npz
from tests.helpers.images import fixture, mode_image, photo
from tests.helpers.processor_cases import CASES

RAW = {"do_resize": False, "do_normalize": False}  # pixel_values = level / 255
# ("slow" would be read as the slow marker by conftest)
PROCESSORS = {"BlipImageProcessor": BlipImageProcessor, "BlipImageProcessorFast": BlipImageProcessorFast}
GOLDEN = load_npz("processor.npz")
CASE_INPUTS = {name: (make, call) for name, make, call, _ in CASES}


def levels_of(processor, image) -> np.ndarray:
    """The 8-bit levels the processor read, from do_resize=False, do_normalize=False output (3, H, W)."""
    out = processor(size=4)(image, return_tensors="np", **RAW)["pixel_values"][0]
    levels = np.rint(out.astype(np.float64) * 255)
    assert np.allclose(levels, out.astype(np.float64) * 255, atol=1e-4)  # whole levels
    assert (levels == levels[0]).all()  # gray: the three channels agree
    return levels[0].astype(np.uint8)


def sixteen_bit(values: np.ndarray, mode: str) -> PIL.Image.Image:
    if mode == "I;16":
        return PIL.Image.fromarray(values.astype(np.uint16))
    byte_order = ">u2" if mode == "I;16B" else "<u2"
    return PIL.Image.frombytes(mode, values.shape[::-1], values.astype(byte_order).tobytes())


SIXTEEN = np.array([[0, 128, 129, 257, 32767, 32896, 65535, 1000]])
SIXTEEN_LEVELS = [[0, 0, 1, 1, 127, 128, 255, 4]]  # round(v / 257)


@pytest.mark.parametrize("kind", sorted(PROCESSORS))
@pytest.mark.parametrize("mode", ["I;16", "I;16L", "I;16B"])
def test_pil_16_bit_modes_are_divided_by_257(mode, kind):
    image = sixteen_bit(SIXTEEN, mode)
    assert image.mode == mode
    assert levels_of(PROCESSORS[kind], image).tolist() == SIXTEEN_LEVELS


@pytest.mark.parametrize("kind", sorted(PROCESSORS))
def test_16_bit_png_path_is_scaled_not_white(kind, tmp_path):
    """The reported failure: a 16-bit grayscale PNG became all white."""
    path = tmp_path / "gray16.png"
    values = np.array([[1000, 20000], [40000, 65535]])
    sixteen_bit(values, "I;16").save(path)
    assert PIL.Image.open(path).mode == "I;16"
    assert levels_of(PROCESSORS[kind], str(path)).tolist() == [[4, 78], [156, 255]]
    assert np.asarray(load_image(path))[..., 0].tolist() == [[4, 78], [156, 255]]


@pytest.mark.parametrize(
    "values,expected",
    [
        ([[-5, 0, 100, 255]], [[0, 0, 100, 255]]),  # 8-bit values: Pillow's conversion, as transformers
        ([[0, 300, 65535]], [[0, 1, 255]]),  # 16-bit data held in 32 bits
        ([[0, 70000, 140000]], [[0, 128, 255]]),  # beyond 16 bits: by the image's maximum (127.5 -> 128)
    ],
    ids=["8bit", "16bit", "32bit"],
)
@pytest.mark.parametrize("kind", sorted(PROCESSORS))
def test_pil_32_bit_integer_mode(values, expected, kind):
    image = PIL.Image.fromarray(np.array(values, np.int32))
    assert image.mode == "I"
    assert levels_of(PROCESSORS[kind], image).tolist() == expected


@pytest.mark.parametrize(
    "values,expected",
    [
        ([[0.0, 0.5, 0.999, 1.0]], [[0, 127, 254, 255]]),  # [0, 1]: trunc(v * 255), as transformers reads floats
        ([[-3.0, 0.5, 2.7, 255.0]], [[0, 0, 2, 255]]),  # 8-bit levels: Pillow's conversion, as transformers
        ([[-7.0, 0.0, 300.0, 600.0]], [[0, 0, 128, 255]]),  # beyond 255: by the maximum, negatives 0
    ],
    ids=["unit", "levels", "beyond"],
)
@pytest.mark.parametrize("kind", sorted(PROCESSORS))
def test_pil_float_mode(values, expected, kind):
    image = PIL.Image.fromarray(np.array(values, np.float32))
    assert image.mode == "F"
    assert levels_of(PROCESSORS[kind], image).tolist() == expected


ARRAY_CASES = [
    (np.array([[0, 256, 65535]], np.uint16), [[0, 1, 255]]),
    (np.array([[0, 100, 255]], np.uint16), [[0, 100, 255]]),  # values within 0..255: 8-bit, as transformers
    (np.array([[0, 514, 70000, 140000]], np.int32), [[0, 1, 128, 255]]),
    (np.array([[0, 2**31, 2**32 - 1]], np.uint32), [[0, 128, 255]]),
    (np.array([[0.0, 256.0, 512.0]], np.float32), [[0, 128, 255]]),
    (np.array([[0.0, 1000.5, 65535.0]], np.float64), [[0, 4, 255]]),
]


@pytest.mark.parametrize("kind", sorted(PROCESSORS))
@pytest.mark.parametrize("index", range(len(ARRAY_CASES)))
def test_numpy_arrays_beyond_8_bit(index, kind):
    values, expected = ARRAY_CASES[index]
    assert levels_of(PROCESSORS[kind], values).tolist() == expected


@pytest.mark.parametrize("framework", ["pt", "tf"])
@pytest.mark.parametrize("kind", sorted(PROCESSORS))
@pytest.mark.parametrize("index", [0, 2, 4])
def test_framework_tensors_beyond_8_bit(index, kind, framework):
    pytest.importorskip({"pt": "torch", "tf": "tensorflow"}[framework])
    values, expected = ARRAY_CASES[index]
    values = values.astype(np.int32) if values.dtype == np.uint16 else values  # TF has no uint16 min/max
    assert levels_of(PROCESSORS[kind], tensor(values, framework)).tolist() == expected


@pytest.mark.parametrize("kind", sorted(PROCESSORS))
def test_16_bit_photo_equals_its_8_bit_original(kind):
    """v * 257 / 257 is exact: a 16-bit copy of a photo processes exactly as the photo."""
    eight = photo("astronaut")[::4, ::4]
    processor = PROCESSORS[kind](size=64)
    expected = processor(eight, return_tensors="np")["pixel_values"]
    deep = eight.astype(np.uint16) * 257
    assert np.array_equal(processor(deep, return_tensors="np")["pixel_values"], expected)
    gray = eight[..., 1]
    assert np.array_equal(
        processor(PIL.Image.fromarray(gray.astype(np.uint16) * 257), return_tensors="np")["pixel_values"],
        processor(PIL.Image.fromarray(gray), return_tensors="np")["pixel_values"],
    )


@pytest.mark.parametrize(
    "name,expected_levels",
    [
        ("mode_I;16", lambda v: np.rint(v / 257)),
        ("mode_I", lambda v: np.rint(np.clip(v, 0, None) * 255 / v.max())),
        ("mode_F", lambda v: np.rint(np.clip(v.astype(np.float64), 0, None) * 255 / v.max())),
        ("path_gray16_png", lambda v: np.rint(v / 257)),
    ],
)
def test_transformers_clips_where_we_scale(name, expected_levels):
    """The goldens of the deep modes are transformers clipping at 255; ours processes the scaled levels."""
    make, call = CASE_INPUTS[name]
    source = make()
    values = np.asarray(PIL.Image.open(source) if isinstance(source, str) else source)
    processor = BlipImageProcessor()
    clipped = PIL.Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))
    assert np.array_equal(GOLDEN[name], processor(clipped, return_tensors="np", **call)["pixel_values"])
    scaled = PIL.Image.fromarray(expected_levels(values).astype(np.uint8))
    ours = processor(source, return_tensors="np", **call)["pixel_values"]
    assert np.array_equal(ours, processor(scaled, return_tensors="np", **call)["pixel_values"])
    assert not np.array_equal(ours, GOLDEN[name])


def test_deep_golden_inputs_really_exceed_8_bits():
    assert np.asarray(mode_image("I;16")).max() > 255 and np.asarray(PIL.Image.open(fixture("gray16.png"))).max() > 255


@pytest.mark.parametrize("kind", sorted(PROCESSORS))
def test_negative_arrays_are_still_refused(kind):
    """Negative values usually mean an already normalised image; transformers refuses them too."""
    with pytest.raises(ValueError, match="outside"):
        PROCESSORS[kind](size=4)(np.array([[-1, 300]], np.int32))
