"""Deterministic test images: every PIL mode, NumPy layouts, real photos, committed files.

The golden-file script and the tests build inputs with these same functions,
so a golden array and its test input are always the same image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "images"


def base_rgb(height: int = 37, width: int = 53, seed: int = 0) -> np.ndarray:
    """A smooth-plus-noise uint8 RGB image with odd sizes."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width]
    smooth = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    return np.clip(smooth + rng.randint(-40, 41, size=(height, width, 3)), 0, 255).astype(np.uint8)


def mode_image(mode: str, seed: int = 0) -> PIL.Image.Image:
    """A PIL image of `mode` (RGB, RGBA, LA, L, P, P+tRNS, CMYK, 1, I, I;16, F, YCbCr)."""
    rgb = PIL.Image.fromarray(base_rgb(seed=seed))
    rng = np.random.RandomState(seed + 1)
    if mode == "RGBA":
        alpha = rng.randint(0, 256, size=(rgb.height, rgb.width)).astype(np.uint8)
        return PIL.Image.fromarray(np.dstack([np.asarray(rgb), alpha]))
    if mode == "LA":
        image = rgb.convert("LA")
        image.putalpha(PIL.Image.fromarray(rng.randint(0, 256, size=(rgb.height, rgb.width)).astype(np.uint8)))
        return image
    if mode == "P":
        return rgb.convert("P", palette=PIL.Image.Palette.ADAPTIVE, colors=17)
    if mode == "P+tRNS":
        image = rgb.convert("P", palette=PIL.Image.Palette.ADAPTIVE, colors=17)
        image.info["transparency"] = 3
        return image
    if mode == "I":
        return PIL.Image.fromarray(rng.randint(-300, 70000, size=(rgb.height, rgb.width)).astype(np.int32))
    if mode == "I;16":
        values = rng.randint(0, 65536, size=(rgb.height, rgb.width)).astype(np.uint16)
        return PIL.Image.fromarray(values)
    if mode == "F":
        return PIL.Image.fromarray((rng.rand(rgb.height, rgb.width) * 300 - 20).astype(np.float32))
    return rgb.convert(mode)


PIL_MODES = ("RGB", "RGBA", "LA", "L", "P", "P+tRNS", "CMYK", "1", "I", "I;16", "F", "YCbCr")


def photo(name: str) -> np.ndarray:
    """A real photo shipped with scikit-image (chelsea, astronaut, coffee)."""
    import skimage.data

    return getattr(skimage.data, name)()


def fixture(name: str) -> Path:
    path = FIXTURES / name
    if not path.is_file():
        raise FileNotFoundError(f"test fixture {path} is missing; regenerate with tests/tools/make_core_golden.py")
    return path


def write_image_fixtures(folder: Path = FIXTURES) -> None:
    """Create the committed image files (run by the golden-file script)."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = PIL.Image.fromarray(base_rgb(40, 20, seed=3))
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    rgb.save(folder / "exif_orientation6.jpg", quality=95, exif=exif.tobytes())
    mode_image("P+tRNS", seed=4).save(folder / "palette_transparency.png", transparency=3)
    mode_image("RGBA", seed=5).save(folder / "rgba.png")
    mode_image("I;16", seed=6).save(folder / "gray16.png")
    mode_image("CMYK", seed=7).save(folder / "cmyk.jpg", quality=95)
