"""Bicubic resampling as a matrix, identical in every framework.

`torch.nn.functional.interpolate(mode="bicubic", align_corners=False)` (what
`transformers` and the original BLIP use to resize position embeddings)
uses the cubic convolution kernel with a = -0.75 and clamps indices at the
borders. TensorFlow's bicubic resize uses a different kernel, so both trees
apply this matrix instead: `out = M_h @ grid @ M_w.T`.
"""

from __future__ import annotations

import functools

import numpy as np

CUBIC_A = -0.75


def _cubic(distance: np.ndarray) -> np.ndarray:
    x = np.abs(distance)
    near = ((CUBIC_A + 2) * x - (CUBIC_A + 3)) * x * x + 1
    far = ((CUBIC_A * x - 5 * CUBIC_A) * x + 8 * CUBIC_A) * x - 4 * CUBIC_A
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


@functools.lru_cache(maxsize=64)
def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float64 matrix resampling one axis like torch's bicubic."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"bicubic resize needs positive sizes, got {in_size} -> {out_size}")
    matrix = np.zeros((out_size, in_size))
    scale = in_size / out_size
    for row in range(out_size):
        source = (row + 0.5) * scale - 0.5
        base = int(np.floor(source))
        for offset in range(-1, 3):
            index = min(max(base + offset, 0), in_size - 1)
            matrix[row, index] += _cubic(source - (base + offset))
    matrix.flags.writeable = False
    return matrix


def resize_grid(grid: np.ndarray, out_height: int, out_width: int) -> np.ndarray:
    """Resize a (H, W, C) array bicubically (float64 math, input dtype out)."""
    rows = bicubic_matrix(grid.shape[0], out_height)
    cols = bicubic_matrix(grid.shape[1], out_width)
    out = np.einsum("oh,hwc,pw->opc", rows, grid.astype(np.float64), cols)
    return out.astype(grid.dtype)
