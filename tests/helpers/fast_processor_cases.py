"""Fast image-processor cases shared by `tests/tools/make_fast_processor_golden.py` and the tests.

Each case is (name, make_inputs, call_kwargs, init_kwargs); the golden is
`transformers.BlipImageProcessorFast` (4.57.6, torchvision 0.29.1, CPU) on the
same inputs with `return_tensors="pt"`. `make_inputs` takes the framework
("np", "pt") of the tensor inputs a case builds, so the tests can feed the
same images as torch or TensorFlow tensors.

`RESIZE_CASES` are (name, photo, height, width, resample): uint8 images
resized by torchvision's `F.resize(..., antialias=True)` alone, stored as
uint8 levels (full arrays where small, a SHA-256 where large).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image

from tests.helpers.images import base_rgb, photo

SMALL = {"height": 30, "width": 38}
Case = tuple[str, Callable[[str], Any], dict[str, Any], dict[str, Any]]


def tensor(array: np.ndarray, framework: str) -> Any:
    """`array` as a tensor of `framework` ("np", "pt" or "tf")."""
    array = np.ascontiguousarray(array)
    if framework == "pt":
        import torch

        return torch.from_numpy(array)
    if framework == "tf":
        import tensorflow as tf

        return tf.convert_to_tensor(array)
    return array


def _float01(seed: int = 11, dtype: Any = np.float32) -> np.ndarray:
    return np.random.RandomState(seed).rand(29, 31, 3).astype(dtype)


def _chelsea_pil(_: str) -> PIL.Image.Image:
    return PIL.Image.fromarray(photo("chelsea"))


CASES: list[Case] = [
    (
        "pil_astronaut_down",
        lambda f: PIL.Image.fromarray(photo("astronaut")),
        {"size": {"height": 64, "width": 48}},
        {},
    ),
    ("numpy_coffee_down", lambda f: photo("coffee"), {"size": {"height": 96, "width": 80}}, {}),
    ("numpy_chw_up", lambda f: base_rgb(seed=8).transpose(2, 0, 1).copy(), {"size": {"height": 80, "width": 100}}, {}),
    ("mixed_up_down", lambda f: base_rgb(seed=2), {"size": {"height": 30, "width": 90}}, {}),
    ("tensor_uint8_chw", lambda f: tensor(base_rgb(seed=12).transpose(2, 0, 1), f), {"size": SMALL}, {}),
    ("tensor_uint8_hwc", lambda f: tensor(base_rgb(seed=13), f), {"size": SMALL}, {}),
    (
        "tensor_float01_chw",
        lambda f: tensor(_float01().transpose(2, 0, 1), f),
        {"size": SMALL, "do_rescale": False},
        {},
    ),
    ("numpy_float01_no_rescale", lambda f: _float01(), {"size": {"height": 40, "width": 40}, "do_rescale": False}, {}),
    ("numpy_float64_double_rescale", lambda f: _float01(5, np.float64), {"size": SMALL}, {}),
    ("numpy_float_integral", lambda f: base_rgb(seed=9).astype(np.float32), {"size": SMALL}, {}),
    (
        "batch_mixed_sizes",
        lambda f: [_chelsea_pil(f), photo("coffee"), base_rgb(seed=1), base_rgb(seed=1)],
        {"size": {"height": 48, "width": 48}},
        {},
    ),
    ("resample_nearest", lambda f: base_rgb(seed=3), {"size": SMALL, "resample": 0}, {}),
    ("resample_bilinear", lambda f: base_rgb(seed=3), {"size": SMALL, "resample": 2}, {}),
    ("resample_lanczos", lambda f: base_rgb(seed=3), {"size": SMALL, "resample": 1}, {}),
    (
        "resample_bilinear_up",
        lambda f: base_rgb(20, 24, seed=3),
        {"size": {"height": 50, "width": 41}, "resample": 2},
        {},
    ),
    ("float_bilinear", lambda f: base_rgb(seed=3).astype(np.float32), {"size": SMALL, "resample": 2}, {}),
    ("no_normalize", lambda f: base_rgb(seed=4), {"size": SMALL, "do_normalize": False}, {}),
    (
        "no_rescale_no_normalize",
        lambda f: base_rgb(seed=4),
        {"size": SMALL, "do_rescale": False, "do_normalize": False},
        {},
    ),
    ("normalize_only", lambda f: base_rgb(seed=4), {"size": SMALL, "do_rescale": False}, {}),
    (
        "custom_mean_std",
        lambda f: base_rgb(seed=4),
        {"size": SMALL, "image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.3, 0.4]},
        {},
    ),
    ("rescale_factor", lambda f: base_rgb(seed=4), {"size": SMALL, "rescale_factor": 0.5 / 255}, {}),
    ("pil_gray_l", lambda f: PIL.Image.fromarray(base_rgb(seed=6)[..., 0]), {"size": SMALL}, {}),
    (
        "pil_rgba",
        lambda f: PIL.Image.fromarray(np.dstack([base_rgb(seed=7), base_rgb(seed=8)[..., :1]])),
        {"size": SMALL},
        {},
    ),
    ("no_resize_same_size", lambda f: [base_rgb(seed=1), base_rgb(seed=2)], {"do_resize": False}, {}),
    (
        "center_crop",
        lambda f: base_rgb(seed=5),
        {"size": SMALL, "do_center_crop": True, "crop_size": {"height": 20, "width": 24}},
        {},
    ),
    (
        "center_crop_pads",
        lambda f: base_rgb(seed=5),
        {"size": {"height": 16, "width": 20}, "do_center_crop": True, "crop_size": {"height": 21, "width": 25}},
        {},
    ),
    (
        "pad_no_resize",
        lambda f: [base_rgb(10, 12, seed=1), base_rgb(14, 9, seed=2)],
        {"do_resize": False, "do_pad": True},
        {},
    ),
    ("init_overrides", lambda f: base_rgb(seed=6), {}, {"size": 20, "resample": 2, "do_normalize": False}),
]

RESIZE_CASES: list[tuple[str, str, int, int, int]] = [
    ("chelsea_384", "chelsea", 384, 384, 3),
    ("astronaut_384", "astronaut", 384, 384, 3),
    ("coffee_384", "coffee", 384, 384, 3),
    ("rocket_384", "rocket", 384, 384, 3),
    ("astronaut_strong_down", "astronaut", 37, 41, 3),
    ("coffee_strong_down_bilinear", "coffee", 29, 47, 2),
    ("chelsea_up", "chelsea", 700, 600, 3),
    ("coffee_lanczos", "coffee", 200, 300, 1),
]
FULL_LEVELS = ("chelsea_384", "astronaut_strong_down", "coffee_strong_down_bilinear")
