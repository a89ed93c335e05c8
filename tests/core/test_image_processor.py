"""BlipImageProcessor: bit-exact against `transformers` 4.57.6 goldens, plus its extensions and errors."""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import PIL.Image
import pytest

from blip_core import BlipImageProcessor
from tests.helpers.golden import load_json, load_npz
from tests.helpers.images import base_rgb, mode_image
from tests.helpers.processor_cases import CASES

GOLDEN_META = load_json("processor.json")["cases"]
GOLDEN_ARRAYS = load_npz("processor.npz")
# Images of more than 8 bits, which transformers clips at 255 and blip-dual scales (image_depth; tested in
# test_image_processor_depth.py, where these goldens are shown to be the clipped images).
DEEP_CASES = ("mode_I", "mode_I;16", "mode_F", "path_gray16_png")
EIGHT_BIT_CASES = [case for case in CASES if case[0] not in DEEP_CASES]


@pytest.mark.parametrize(
    "name,make_inputs,call_kwargs,init_kwargs", EIGHT_BIT_CASES, ids=[case[0] for case in EIGHT_BIT_CASES]
)
def test_matches_transformers_bit_exact(name, make_inputs, call_kwargs, init_kwargs):
    processor = BlipImageProcessor(**init_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = processor(make_inputs(), return_tensors="np", **call_kwargs)["pixel_values"]
    meta = GOLDEN_META[name]
    assert list(out.shape) == meta["shape"]
    assert out.dtype == np.float32
    if name in GOLDEN_ARRAYS:
        golden = GOLDEN_ARRAYS[name].astype(np.float32)
        assert np.array_equal(out, golden), f"max diff {np.abs(out - golden).max()}"
    assert hashlib.sha256(out.tobytes()).hexdigest() == meta["sha256"]


def test_golden_covers_every_case():
    assert set(GOLDEN_META) == {case[0] for case in CASES}
    assert set(DEEP_CASES) <= set(GOLDEN_META)


def test_return_tensors_variants_agree():
    processor = BlipImageProcessor(size=20)
    image = base_rgb(seed=1)
    as_np = processor(image, return_tensors="np")["pixel_values"]
    as_list = processor(image)["pixel_values"]
    assert isinstance(as_list, list) and len(as_list) == 1
    assert np.array_equal(as_list[0], as_np[0])
    torch = pytest.importorskip("torch")
    as_pt = processor(image, return_tensors="pt").pixel_values
    assert as_pt.dtype == torch.float32 and np.array_equal(as_pt.numpy(), as_np)


def test_return_tensors_tf():
    tf = pytest.importorskip("tensorflow")
    processor = BlipImageProcessor(size=20)
    image = base_rgb(seed=1)
    out = processor(image, return_tensors="tf")["pixel_values"]
    assert out.dtype == tf.float32
    assert np.array_equal(out.numpy(), processor(image, return_tensors="np")["pixel_values"])


def test_batch_to_casts_only_floats():
    torch = pytest.importorskip("torch")
    processor = BlipImageProcessor(size=8)
    batch = processor(base_rgb(), return_tensors="pt")
    moved = batch.to("cpu", torch.float16)
    assert moved["pixel_values"].dtype == torch.float16
    assert batch["pixel_values"].dtype == torch.float32  # the original is untouched


@pytest.mark.parametrize(
    "array_fn,pil_mode",
    [
        (lambda rgb: rgb[..., 0], "L"),
        (lambda rgb: rgb[..., :1], "L"),
        (lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]), "RGBA"),
    ],
    ids=["2d_gray", "hw1", "hw4"],
)
def test_arrays_transformers_rejects_equal_their_pil_equivalent(array_fn, pil_mode):
    rgb = base_rgb(seed=5)
    array = array_fn(rgb)
    processor = BlipImageProcessor(size=16)
    squeezed = array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array
    pil = PIL.Image.fromarray(squeezed)
    assert pil.mode == pil_mode
    out_array = processor(array, return_tensors="np")["pixel_values"]
    out_pil = processor(pil, return_tensors="np")["pixel_values"]
    assert np.array_equal(out_array, out_pil)


def test_chw_4_channel_array_drops_alpha():
    rgb = base_rgb(seed=6)
    rgba_chw = np.concatenate([rgb, np.zeros(rgb.shape[:2] + (1,), np.uint8)], axis=-1).transpose(2, 0, 1)
    processor = BlipImageProcessor(size=12)
    assert np.array_equal(
        processor(rgba_chw, return_tensors="np")["pixel_values"], processor(rgb, return_tensors="np")["pixel_values"]
    )


def test_batched_4d_array_is_a_batch():
    images = np.stack([base_rgb(seed=1), base_rgb(seed=2)])
    processor = BlipImageProcessor(size=10)
    out = processor(images, return_tensors="np")["pixel_values"]
    single = processor(images[1], return_tensors="np")["pixel_values"]
    assert out.shape == (2, 3, 10, 10) and np.array_equal(out[1], single[0])


def test_shortest_edge_config_form_loads(tmp_path):
    config = {
        "do_normalize": True,
        "do_pad": True,
        "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_processor_type": "BlipImageProcessor",
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "processor_class": "BlipProcessor",
        "size": {"shortest_edge": 24},
        "size_divisor": 32,
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    processor = BlipImageProcessor.from_pretrained(tmp_path)
    assert processor.size == {"height": 24, "width": 24}
    assert processor.extra["do_pad"] is True and processor.extra["size_divisor"] == 32
    assert processor(base_rgb(), return_tensors="np")["pixel_values"].shape == (1, 3, 24, 24)


def test_hub_base_repo_config_form(tmp_path):
    config = {
        "do_normalize": True,
        "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_processor_type": "BlipImageProcessor",
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "processor_class": "BlipProcessor",
        "size": 384,
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    processor = BlipImageProcessor.from_pretrained(tmp_path)
    assert processor.size == {"height": 384, "width": 384} and processor.resample == 3
    assert processor.rescale_factor == 1 / 255


def test_save_and_reload_round_trip(tmp_path):
    processor = BlipImageProcessor(
        size={"height": 20, "width": 30}, resample=2, image_mean=0.5, image_std=[0.1, 0.2, 0.3]
    )
    processor.save_pretrained(tmp_path)
    again = BlipImageProcessor.from_pretrained(tmp_path)
    assert again.to_dict() == processor.to_dict()
    image = base_rgb(seed=3)
    assert np.array_equal(
        processor(image, return_tensors="np")["pixel_values"], again(image, return_tensors="np")["pixel_values"]
    )


def test_double_rescale_warns():
    with pytest.warns(UserWarning, match="already looks rescaled"):
        BlipImageProcessor(size=8)(np.random.RandomState(0).rand(9, 9, 3).astype(np.float32))


@pytest.mark.parametrize(
    "bad,message",
    [
        (np.zeros((5, 5, 7), np.uint8), "cannot tell the channel axis"),
        (np.zeros((2, 2, 2, 2, 2), np.uint8), "must have 2 or 3 dimensions"),
        (np.array([["a"]], dtype=object), "dtype object"),
        (np.zeros((0, 5, 3), np.uint8), "is empty"),
        (np.full((4, 4, 3), 2.5, np.float32), "outside \\[0, 1\\]"),
        (np.full((4, 4, 3), -3.0, np.float32), "outside \\[0, 255\\]"),
        (np.full((4, 4, 3), -0.5, np.float32), "outside \\[0, 1\\]"),
        (12345, "cannot use an object of type int"),
        ("/no/such/image.png", "not an existing file"),
        (None, "images is None"),
        ([base_rgb(), None], "contain None"),
    ],
    ids=[
        "7_channels",
        "5d",
        "object",
        "empty",
        "float_range",
        "negative_integral",
        "negative_float",
        "int",
        "missing_path",
        "none",
        "none_in_list",
    ],
)
def test_bad_inputs_raise_clear_value_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        BlipImageProcessor(size=8)(bad)


def test_unreadable_file_names_the_file(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="broken.jpg.*cannot be read"):
        BlipImageProcessor(size=8)(str(path))


def test_decompression_bomb_guard_stays_on(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    PIL.Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ValueError, match="decompression bomb"):
        BlipImageProcessor(size=8)(str(path))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"size": {"h": 3}}, "size must be"),
        ({"size": 0}, "positive integer"),
        ({"resample": 42}, "resample must be"),
        ({"image_mean": [0.1, 0.2]}, "image_mean must have 3 values"),
        ({"image_std": [0.0, 1.0, 1.0]}, "must not contain zeros"),
        ({"return_tensors": "jax"}, "return_tensors must be"),
        ({"colour": True}, "unexpected arguments"),
        ({"do_resize": False, "return_tensors": "np"}, "different sizes"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    images = [base_rgb(10, 12), base_rgb(14, 12)]
    with pytest.raises((ValueError, TypeError), match=message):
        BlipImageProcessor(size=8)(images, **kwargs)


def test_base64_and_data_uri_inputs(tmp_path):
    import base64
    import io

    buffer = io.BytesIO()
    mode_image("RGB", seed=2).save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    processor = BlipImageProcessor(size=8)
    expected = processor(mode_image("RGB", seed=2), return_tensors="np")["pixel_values"]
    assert np.array_equal(processor(encoded, return_tensors="np")["pixel_values"], expected)
    uri = "data:image/png;base64," + encoded
    assert np.array_equal(processor(uri, return_tensors="np")["pixel_values"], expected)


def test_url_input_is_fetched_and_exif_transposed(monkeypatch, image_urls_allowed):
    from blip_core.processing import image_loading
    from tests.helpers.images import fixture

    data = fixture("exif_orientation6.jpg").read_bytes()
    monkeypatch.setattr(image_loading, "_download", lambda url, timeout=None: data)
    processor = BlipImageProcessor(size={"height": 30, "width": 38})
    from_url = processor("https://example.com/cat.jpg", return_tensors="np")["pixel_values"]
    from_path = processor(str(fixture("exif_orientation6.jpg")), return_tensors="np")["pixel_values"]
    assert np.array_equal(from_url, from_path)


def test_url_download_failure_is_one_clear_error(monkeypatch, image_urls_allowed):
    """Without `requests`, downloads go through urllib; a failure is an ImageDownloadError (OSError, ValueError)."""
    import sys
    import urllib.error
    import urllib.request

    from blip_core.processing import image_loading

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setitem(sys.modules, "requests", None)  # `import requests` fails: the urllib path
    monkeypatch.setattr(urllib.request.OpenerDirector, "open", refuse)
    expected = "cannot download image from 'https://example.com/x.jpg'"
    with pytest.raises(image_loading.ImageDownloadError, match=expected) as info:
        BlipImageProcessor(size=8)("https://example.com/x.jpg")
    assert isinstance(info.value, OSError) and isinstance(info.value, ValueError)
    assert "network is unreachable" in str(info.value)
