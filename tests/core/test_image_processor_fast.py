"""BlipImageProcessorFast against `transformers`' fast processor (goldens of torchvision 0.29.1 on CPU).

uint8 images are bit-exact in every framework (the resize reproduces torch's integer kernel); float images
agree within float rounding. The bound against the slow (PIL) processor and against torchvision's GPU
path is pinned as documented.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings

import numpy as np
import PIL.Image
import pytest

from blip_core import AutoImageProcessor, BlipImageProcessor, BlipImageProcessorFast, BlipProcessor, BlipTokenizer
from blip_core.processing.image_backends import NumpyBackend, TensorFlowBackend, TorchBackend
from blip_core.processing.image_processing_fast import resize_batch
from tests.helpers.fast_processor_cases import CASES, FULL_LEVELS, RESIZE_CASES
from tests.helpers.golden import FIXTURES, load_json, load_npz
from tests.helpers.images import base_rgb, photo

GOLDEN = load_npz("fast_processor.npz")
META = load_json("fast_processor.json")
FLOAT_CASES = {
    "tensor_float01_chw",
    "numpy_float01_no_rescale",
    "numpy_float64_double_rescale",
    "numpy_float_integral",
    "float_bilinear",
}
FRAMEWORKS = {"np": None, "pt": "torch", "tf": "tensorflow"}
STD = np.array([0.26862954, 0.26130258, 0.27577711]).reshape(1, 3, 1, 1)


def run(name, make_inputs, call_kwargs, init_kwargs, framework):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = BlipImageProcessorFast(**init_kwargs)(make_inputs(framework), return_tensors=framework, **call_kwargs)
    pixels = out["pixel_values"]
    return pixels if framework == "np" else pixels.numpy()


def levels_apart(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| in 8-bit levels, for normalised pixel values (mean/std of CLIP)."""
    return np.abs(a.astype(np.float64) - b) * 255 * STD


def test_golden_covers_every_case():
    assert {key.split("/", 1)[1] for key in GOLDEN if key.startswith("case/")} == {case[0] for case in CASES}
    assert set(META["resizes"]) == {case[0] for case in RESIZE_CASES}


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
@pytest.mark.parametrize("name,make_inputs,call_kwargs,init_kwargs", CASES, ids=[case[0] for case in CASES])
def test_matches_transformers_fast(name, make_inputs, call_kwargs, init_kwargs, framework):
    if FRAMEWORKS[framework]:
        pytest.importorskip(FRAMEWORKS[framework])
    out = run(name, make_inputs, call_kwargs, init_kwargs, framework)
    golden = GOLDEN[f"case/{name}"]
    assert out.shape == golden.shape and out.dtype == golden.dtype
    if name in FLOAT_CASES:
        np.testing.assert_allclose(out, golden, rtol=0, atol=1e-5)
    else:  # uint8 images: the same integer arithmetic as torch's kernel, then the same float32 normalisation
        np.testing.assert_allclose(out, golden, rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend_name", ["np", "pt", "pt-plans", "tf"])
@pytest.mark.parametrize("name,photo_name,height,width,resample", RESIZE_CASES, ids=[c[0] for c in RESIZE_CASES])
def test_resize_levels_bit_exact(name, photo_name, height, width, resample, backend_name, monkeypatch):
    """uint8 resizes equal torchvision's (sizes up and down, strong downscales in float64, 4 filters).

    "pt" uses torch's own kernel where it applies (CPU, AVX2/AVX-512); "pt-plans" the matrix products that
    torch runs on GPUs and other CPUs.
    """
    backends = {"np": NumpyBackend, "pt": TorchBackend, "pt-plans": TorchBackend, "tf": TensorFlowBackend}
    module = {"np": None, "pt": "torch", "pt-plans": "torch", "tf": "tensorflow"}[backend_name]
    if module:
        pytest.importorskip(module)
    if backend_name == "pt-plans":
        monkeypatch.setattr(TorchBackend, "native_resize", lambda self, *args: None)
    backend = backends[backend_name]()
    batch = backend.from_numpy(photo(photo_name)[None])  # (1, H, W, 3) uint8
    levels = resize_batch(batch, {"height": height, "width": width}, resample, True, backend)
    levels = np.ascontiguousarray(backend.to_numpy(levels)[0].transpose(2, 0, 1)).astype(np.uint8)
    assert list(levels.shape) == META["resizes"][name]["shape"]
    if name in FULL_LEVELS:
        assert np.array_equal(levels, GOLDEN[f"levels/{name}"])
    assert hashlib.sha256(levels.tobytes()).hexdigest() == META["resizes"][name]["sha256"]


@pytest.mark.parametrize("photo_name", ["chelsea", "astronaut", "coffee", "rocket"])
@pytest.mark.parametrize("size", [384, 200, 600])
def test_differs_from_the_slow_processor_by_at_most_two_levels(photo_name, size):
    """The two resizes share Pillow's filter; they round differently: <= 2 levels on < 1.5% of the values."""
    image = photo(photo_name)
    fast = BlipImageProcessorFast(size=size)(image, return_tensors="np")["pixel_values"]
    slow = BlipImageProcessor(size=size)(image, return_tensors="np")["pixel_values"]
    apart = levels_apart(fast, slow)
    assert apart.max() <= 2 + 1e-3
    assert (apart > 0.5).mean() < 0.015
    assert (apart > 0.5).any()  # they do differ: the bound is not vacuous


@pytest.mark.parametrize("name", sorted(key.split("/", 1)[1] for key in GOLDEN if key.startswith("gpu_path/")))
def test_gpu_path_of_torchvision_is_documented_not_followed(name):
    """On a GPU torchvision resizes uint8 in float without rounding between passes: up to 6 levels apart."""
    make_inputs, call_kwargs, init_kwargs = next((c[1], c[2], c[3]) for c in CASES if c[0] == name)
    ours = run(name, make_inputs, call_kwargs, init_kwargs, "np")
    apart = levels_apart(ours, GOLDEN[f"gpu_path/{name}"])
    assert 0.5 < apart.max() <= 6 + 1e-3
    assert np.array_equal(ours, GOLDEN[f"case/{name}"])


def test_frameworks_agree_exactly_on_uint8_and_keep_their_tensor_types():
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("tensorflow")
    images = [photo("coffee"), base_rgb(seed=4)]
    processor = BlipImageProcessorFast(size=64)
    as_np = processor(images, return_tensors="np")["pixel_values"]
    from_torch = processor([torch.from_numpy(x) for x in images], return_tensors="pt")["pixel_values"]
    from_tf = processor([tf.convert_to_tensor(x) for x in images], return_tensors="tf")["pixel_values"]
    assert isinstance(from_torch, torch.Tensor) and from_torch.dtype == torch.float32
    assert isinstance(from_tf, tf.Tensor) and from_tf.dtype == tf.float32
    assert np.array_equal(from_torch.numpy(), as_np) and np.array_equal(from_tf.numpy(), as_np)
    listed = processor([torch.from_numpy(x) for x in images])["pixel_values"]  # return_tensors=None
    assert isinstance(listed, list) and all(isinstance(t, torch.Tensor) for t in listed)
    assert np.array_equal(np.stack([t.numpy() for t in listed]), as_np)


def test_channels_last_output_and_device_cpu():
    torch = pytest.importorskip("torch")
    image = base_rgb(seed=3)
    processor = BlipImageProcessorFast(size=20)
    first = processor(image, return_tensors="pt", device="cpu")["pixel_values"]
    last = processor(image, return_tensors="pt", data_format="channels_last")["pixel_values"]
    assert first.device == torch.device("cpu") and last.shape == (1, 20, 20, 3)
    assert torch.equal(last.permute(0, 3, 1, 2), first)


def test_save_load_and_transformers_config_form(tmp_path):
    saved = META["saved_config"]
    assert BlipImageProcessorFast().to_dict() == saved
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(saved))
    loaded = BlipImageProcessorFast.from_pretrained(tmp_path)
    assert isinstance(loaded, BlipImageProcessorFast) and loaded.to_dict() == saved
    custom = BlipImageProcessorFast(size={"height": 20, "width": 30}, resample=2, do_pad=True, image_mean=0.5)
    custom.save_pretrained(tmp_path / "custom")
    again = BlipImageProcessorFast.from_pretrained(tmp_path / "custom")
    assert again.to_dict() == custom.to_dict()
    image = base_rgb(seed=7)
    assert np.array_equal(
        custom(image, return_tensors="np").pixel_values, again(image, return_tensors="np").pixel_values
    )


def test_dec_2022_config_pads_like_transformers_fast(tmp_path):
    """do_pad from the Salesforce configs is inert in the slow processor and active in the fast one."""
    config = {"do_pad": True, "size": {"height": 24, "width": 24}, "size_divisor": 32, "resample": 3}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    fast = BlipImageProcessorFast.from_pretrained(tmp_path)
    assert fast.do_pad and fast.extra["size_divisor"] == 32
    out = fast([base_rgb(10, 12), base_rgb(14, 9)], do_resize=False, return_tensors="np")["pixel_values"]
    assert out.shape == (2, 3, 14, 12) and (out[0, :, 10:, :] == 0).all()


@pytest.mark.parametrize("saved", ["BlipImageProcessor", "BlipImageProcessorFast", "None"])
@pytest.mark.parametrize("use_fast", [None, True, False])
def test_auto_and_processor_pick_the_class_transformers_picks(saved, use_fast, tmp_path):
    config = {"size": {"height": 24, "width": 24}}
    if saved != "None":
        config["image_processor_type"] = saved
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    BlipTokenizer.from_pretrained(FIXTURES / "tokenizer").save_pretrained(tmp_path)
    options = {} if use_fast is None else {"use_fast": use_fast}
    expected = META["auto_choices"][saved]
    assert type(AutoImageProcessor.from_pretrained(tmp_path, **options)).__name__ == expected[f"auto/{use_fast}"]
    processor = BlipProcessor.from_pretrained(tmp_path, **options)
    assert type(processor.image_processor).__name__ == expected[f"processor/{use_fast}"]


def test_auto_refuses_other_models_processors(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "CLIPImageProcessor"}))
    with pytest.raises(ValueError, match="CLIPImageProcessor"):
        AutoImageProcessor.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="from_pretrained"):
        AutoImageProcessor()


def test_processor_with_the_fast_image_processor():
    tokenizer = BlipTokenizer.from_pretrained(FIXTURES / "tokenizer")
    processor = BlipProcessor(BlipImageProcessorFast(size=24), tokenizer)
    out = processor(images=[base_rgb(), photo("coffee")], text=["a cat", "a cup"], padding=True, return_tensors="np")
    assert list(out) == ["pixel_values", "input_ids", "attention_mask"] and out["pixel_values"].shape == (2, 3, 24, 24)
    expected = BlipImageProcessorFast(size=24)([base_rgb(), photo("coffee")], return_tensors="np")["pixel_values"]
    assert np.array_equal(out["pixel_values"], expected)


@pytest.mark.parametrize(
    "bad,kwargs,error,message",
    [
        (np.zeros((5, 5, 7), np.uint8), {}, ValueError, "cannot tell the channel axis"),
        (np.zeros((2, 2, 2, 2, 2), np.uint8), {}, ValueError, "2 or 3 dimensions"),
        (np.zeros((0, 5, 3), np.uint8), {}, ValueError, "is empty"),
        (np.array([["a"]], dtype=object), {}, ValueError, "dtype object"),
        (np.full((4, 4, 3), np.nan, np.float32), {}, ValueError, "NaN"),
        (12345, {}, ValueError, "cannot use an object of type int"),
        ([base_rgb(), None], {}, ValueError, "contain None"),
        (base_rgb(), {"colour": True}, TypeError, "unexpected arguments"),
        (base_rgb(), {"return_tensors": "jax"}, ValueError, "return_tensors must be"),
        (base_rgb(), {"size": 0}, ValueError, "positive integer"),
        (base_rgb(), {"resample": 42}, ValueError, "resample must be"),
        (base_rgb(), {"data_format": "sideways"}, ValueError, "data_format must be"),
        (base_rgb(), {"do_center_crop": True}, ValueError, "needs crop_size"),
        ([base_rgb(10, 12), base_rgb(14, 12)], {"do_resize": False, "return_tensors": "np"}, ValueError, "different"),
        ([base_rgb(10, 12)], {"do_pad": True, "pad_size": {"height": 4, "width": 4}}, ValueError, "smaller"),
    ],
)
def test_bad_inputs_raise_clear_errors(bad, kwargs, error, message):
    with pytest.raises(error, match=message):
        BlipImageProcessorFast(size=8)(bad, **kwargs)


def test_unavailable_device_is_a_value_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="not available"):
        BlipImageProcessorFast(size=8)(base_rgb(), return_tensors="pt", device="cuda")
    with pytest.raises(ValueError, match="'gpu' is not a torch device"):
        BlipImageProcessorFast(size=8)(base_rgb(), return_tensors="np", device="gpu")


def test_numpy_inputs_never_import_a_framework():
    code = (
        "import sys, numpy as np\n"
        "from blip_core import BlipImageProcessorFast\n"
        "out = BlipImageProcessorFast(size=16)([np.zeros((20, 30, 3), np.uint8)] * 2, return_tensors='np')\n"
        "assert out['pixel_values'].shape == (2, 3, 16, 16)\n"
        "print(sorted(m for m in ('torch', 'tensorflow') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_pil_inputs_of_every_mode():
    processor = BlipImageProcessorFast(size=16)
    for mode in ("RGB", "RGBA", "L", "P", "CMYK", "1", "LA", "YCbCr"):
        image = PIL.Image.fromarray(base_rgb(seed=2)).convert(mode)
        slow = BlipImageProcessor(size=16)(image, return_tensors="np")["pixel_values"]
        fast = processor(image, return_tensors="np")["pixel_values"]
        assert levels_apart(fast, slow).max() <= 2 + 1e-3, mode
