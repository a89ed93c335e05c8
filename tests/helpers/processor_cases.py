"""Image-processor cases shared by the golden-file script and the tests.

Each case is (name, make_inputs, call_kwargs, init_kwargs). The goldens are
`transformers.BlipImageProcessor` (4.57.6, slow) outputs for the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image

from tests.helpers.images import PIL_MODES, base_rgb, fixture, mode_image, photo

SMALL = {"height": 30, "width": 38}
Case = tuple[str, Callable[[], Any], dict[str, Any], dict[str, Any]]


def _float01() -> np.ndarray:
    rng = np.random.RandomState(11)
    return rng.rand(29, 31, 3).astype(np.float32)


def _torch_chw() -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(base_rgb(seed=12).transpose(2, 0, 1)))


CASES: list[Case] = [
    *[(f"mode_{mode}", (lambda m=mode: mode_image(m)), {"size": SMALL}, {}) for mode in PIL_MODES],
    ("photo_chelsea_default", lambda: PIL.Image.fromarray(photo("chelsea")), {}, {}),
    ("photo_astronaut_array", lambda: photo("astronaut"), {"size": SMALL}, {}),
    (
        "photo_coffee_list",
        lambda: [photo("coffee"), PIL.Image.fromarray(photo("chelsea"))],
        {"size": {"height": 24, "width": 24}},
        {},
    ),
    ("numpy_hwc_uint8", lambda: base_rgb(seed=8), {"size": SMALL}, {}),
    ("numpy_chw_uint8", lambda: base_rgb(seed=8).transpose(2, 0, 1).copy(), {"size": SMALL}, {}),
    ("numpy_hwc_float_integral", lambda: base_rgb(seed=9).astype(np.float32), {"size": SMALL}, {}),
    ("numpy_float01_no_rescale", _float01, {"size": SMALL, "do_rescale": False}, {}),
    ("numpy_float01_double_rescale", _float01, {"size": SMALL}, {}),
    ("numpy_3x3x3_channels_first", lambda: base_rgb(3, 3, seed=10), {"size": {"height": 8, "width": 8}}, {}),
    ("torch_chw_uint8", _torch_chw, {"size": SMALL}, {}),
    ("no_resize", lambda: [base_rgb(seed=1), base_rgb(seed=2)], {"do_resize": False}, {}),
    ("resample_nearest", lambda: base_rgb(seed=3), {"size": SMALL, "resample": 0}, {}),
    ("resample_bilinear", lambda: base_rgb(seed=3), {"size": SMALL, "resample": 2}, {}),
    ("no_normalize", lambda: base_rgb(seed=4), {"size": SMALL, "do_normalize": False}, {}),
    (
        "custom_mean_std",
        lambda: base_rgb(seed=4),
        {"size": SMALL, "image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.3, 0.4]},
        {},
    ),
    ("rescale_factor", lambda: base_rgb(seed=4), {"size": SMALL, "rescale_factor": 0.5 / 255}, {}),
    ("no_convert_rgb_on_rgb", lambda: mode_image("RGB", seed=5), {"size": SMALL, "do_convert_rgb": False}, {}),
    ("init_overrides", lambda: base_rgb(seed=6), {}, {"size": 20, "resample": 2, "do_normalize": False}),
    ("path_exif_jpeg", lambda: str(fixture("exif_orientation6.jpg")), {"size": SMALL}, {}),
    ("pil_exif_jpeg_not_transposed", lambda: PIL.Image.open(fixture("exif_orientation6.jpg")), {"size": SMALL}, {}),
    ("path_palette_png", lambda: str(fixture("palette_transparency.png")), {"size": SMALL}, {}),
    ("path_rgba_png", lambda: str(fixture("rgba.png")), {"size": SMALL}, {}),
    ("path_gray16_png", lambda: str(fixture("gray16.png")), {"size": SMALL}, {}),
    ("path_cmyk_jpeg", lambda: str(fixture("cmyk.jpg")), {"size": SMALL}, {}),
    (
        "nested_list",
        lambda: [[base_rgb(seed=1)], [mode_image("L", seed=2), mode_image("P", seed=3)]],
        {"size": {"height": 16, "width": 16}},
        {},
    ),
]
