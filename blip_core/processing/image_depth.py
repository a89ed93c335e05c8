"""Images of more than 8 bits, scaled to the 8-bit range BLIP was trained on.

Pillow's `convert("RGB")` clips 16-bit, 32-bit and float images at 255, and
`transformers` relies on it, so a 16-bit photo becomes all white. Here:

| input | values | 8-bit level |
| --- | --- | --- |
| PIL `I;16`, `I;16L`, `I;16B`, `I;16N` | any (declared 16-bit) | `round(v / 257)` |
| PIL `I` (32-bit int) | max <= 255 | `v`, negatives 0 (Pillow's conversion, as `transformers`) |
| PIL `I` | 255 < max <= 65535 | `round(v / 257)` (16-bit data, as older Pillow opens 16-bit PNGs) |
| PIL `I` | max > 65535 | `round(v * 255 / max)` |
| PIL `F` (32-bit float) | max <= 1 | `trunc(v * 255)`, as `transformers` reads [0, 1] floats |
| PIL `F` | 1 < max <= 255 | `trunc(v)`, negatives 0 (Pillow's conversion, as `transformers`) |
| PIL `F` | max > 255 | `round(v * 255 / max)`, negatives 0 |
| NumPy / tensor integers (not uint8) | 0 <= v, max <= 255 | unchanged (`transformers`' 8-bit values) |
| NumPy / tensor integers | 0 <= v, 255 < max <= 65535 | `round(v / 257)` |
| NumPy / tensor integers | 0 <= v, max > 65535 | `round(v * 255 / max)` |
| NumPy / tensor floats | 0 <= v, max <= 255 | unchanged (`transformers`' [0, 1] and integral [0, 255] rules) |
| NumPy / tensor floats | 0 <= v, max > 255 | `round(v * 255 / max)` |

Arrays with negative values are left for the processor's range check, which
refuses them as `transformers` does (they are usually already normalised).
`round` is round-half-to-even (NumPy, torch and TensorFlow agree; `v / 257`
never ties). A PIL mode declares its depth; a NumPy dtype is only a container,
so an integer array is judged by its values.
"""

from __future__ import annotations

import numpy as np
import PIL.Image

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_SIXTEEN_BIT_DIVISOR = 257.0  # 65535 / 255: maps 0..65535 onto 0..255, and 257 * k back onto k


def depth_factor(kind: str, low: float, high: float) -> float | None:
    """The factor that brings values of dtype kind `kind` ('i', 'u', 'f') to 8 bits, or None to leave them.

    `low` and `high` are the image's smallest and largest values.
    """
    if low < 0 or high <= 255:
        return None
    if kind in "iu" and high <= 65535:
        return 1.0 / _SIXTEEN_BIT_DIVISOR
    return 255.0 / float(high)


def _levels(values: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1.0 / _SIXTEEN_BIT_DIVISOR:
        scaled = values.astype(np.float64) / _SIXTEEN_BIT_DIVISOR
    else:
        scaled = values.astype(np.float64) * factor
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def array_to_8bit(array: np.ndarray) -> np.ndarray:
    """An integer or float array beyond the 8-bit conventions as uint8 levels; any other array unchanged."""
    if array.dtype == np.uint8 or array.dtype.kind not in "iuf" or array.size == 0:
        return array
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return array  # refused by the processor's range check
    factor = depth_factor(array.dtype.kind, array.min(), array.max())
    return array if factor is None else _levels(array, factor)


def _finite(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size else 0.0
    return np.nan_to_num(values, nan=0.0, posinf=top, neginf=0.0)


def _float_levels(values: np.ndarray) -> np.ndarray | None:
    """Levels of a PIL `F` image, or None where Pillow's own conversion is kept."""
    values = _finite(values)
    high = float(values.max()) if values.size else 0.0
    if high <= 1:
        clipped = np.clip(values, 0, 1)
        return (clipped.astype(np.float64) * 255).astype(np.float32).astype(np.uint8)
    if high <= 255:
        return None
    return _levels(np.clip(values, 0, None), 255.0 / high)


def _int_levels(values: np.ndarray) -> np.ndarray | None:
    """Levels of a PIL `I` image, or None where Pillow's own conversion is kept."""
    values = np.clip(values.astype(np.int64), 0, None)
    factor = depth_factor("i", 0, int(values.max()) if values.size else 0)
    return None if factor is None else _levels(values, factor)


def pil_to_8bit(image: PIL.Image.Image) -> PIL.Image.Image:
    """A PIL image of mode I;16*, I or F as an 8-bit `L` image (see the module table); others unchanged."""
    if image.mode in SIXTEEN_BIT_MODES:
        levels = _levels(np.asarray(image), 1.0 / _SIXTEEN_BIT_DIVISOR)
    elif image.mode == "I":
        levels = _int_levels(np.asarray(image))
    elif image.mode == "F":
        levels = _float_levels(np.asarray(image))
    else:
        return image
    return image if levels is None else PIL.Image.fromarray(levels)
