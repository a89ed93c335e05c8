"""Antialiased resampling as banded matrix products, computed once in NumPy for every framework.

`transformers`' fast image processors resize with torchvision, that is
`torch.nn.functional.interpolate(..., antialias=True, align_corners=False)`.
Its antialiased filters are Pillow's: for an axis scaled by `s = in / out`,
output pixel `i` is centred on input position `c = s * (i + 0.5)` and takes
the inputs within `support * max(s, 1)` of it, weighted by
`filter((j - c + 0.5) / max(s, 1))` and normalised to sum 1. Width is
resampled first, then height.

On uint8 images torch runs its integer kernel (on CPU, which `transformers`
uses unless a `device` is given): the weights are rounded to integers of
`precision` bits (the most that keep them within int16) and after each pass
the result is rounded half up and clipped to 0..255. Reproduced here with
exactly representable weights and sums (float32 up to 15 bits, float64
beyond), it is bit-exact. Float images use float32 weights computed as torch
computes them, without rounding.

A pass is `out = W @ x` along one axis, with `W` (out, in) banded: the plan
splits the output rows into blocks, gathers each block's window of input rows
and multiplies block by block, so the cost grows with the band, not with in x out.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

NEAREST, LANCZOS, BILINEAR, BICUBIC, BOX, HAMMING = 0, 1, 2, 3, 4, 5
_BLOCK_ROWS = 8  # small blocks: little wasted work, and products small enough for one BLAS thread
_DENSE_BELOW = 96  # inputs shorter than this are multiplied by the whole matrix
_EXACT_FLOAT32_BITS = 15  # sums of uint8 x int16 weights of up to 15 bits are exact in float32


def _cubic(x: np.ndarray) -> np.ndarray:
    a = x.dtype.type(-0.5)
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0)).astype(x.dtype)


def _triangle(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1, 1 - x, 0).astype(x.dtype)


def _sinc(x: np.ndarray) -> np.ndarray:
    return np.sinc(x.astype(np.float64))


def _lanczos(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 3, _sinc(x) * _sinc(x / 3), 0).astype(x.dtype)


def _box(x: np.ndarray) -> np.ndarray:
    return np.where((x > -0.5) & (x <= 0.5), 1, 0).astype(x.dtype)


def _hamming(x: np.ndarray) -> np.ndarray:
    x64 = np.abs(x.astype(np.float64))
    return np.where(x64 < 1, np.sinc(x64) * (0.54 + 0.46 * np.cos(np.pi * x64)), 0).astype(x.dtype)


# filter, support (in input pixels at scale 1)
_FILTERS = {
    BICUBIC: (_cubic, 2.0),
    BILINEAR: (_triangle, 1.0),
    LANCZOS: (_lanczos, 3.0),
    BOX: (_box, 0.5),
    HAMMING: (_hamming, 1.0),
}


def _nearest_matrix(in_size: int, out_size: int) -> np.ndarray:
    """torch's nearest-exact: input `min(floor((i + 0.5) * in / out), in - 1)` (float32 arithmetic)."""
    scale = np.float32(in_size) / np.float32(out_size)
    rows = np.arange(out_size, dtype=np.float32)
    source = np.minimum(np.floor((rows + np.float32(0.5)) * scale).astype(np.int64), in_size - 1)
    matrix = np.zeros((out_size, in_size))
    matrix[np.arange(out_size), source] = 1.0
    return matrix


def filter_matrix(in_size: int, out_size: int, resample: int, dtype: type = np.float64) -> np.ndarray:
    """The (out, in) antialiased resampling matrix computed in `dtype` (torch: float64 for uint8, float32 else)."""
    if resample == NEAREST:
        return _nearest_matrix(in_size, out_size)
    kernel, base_support = _FILTERS[resample]
    f = np.dtype(dtype).type
    scale = f(in_size) / f(out_size)
    stretch = max(scale, f(1))
    support = f(base_support) * stretch
    inverse = f(1) / stretch
    matrix = np.zeros((out_size, in_size), dtype=dtype)
    for row in range(out_size):
        center = scale * (f(row) + f(0.5))
        low = max(int(center - support + f(0.5)), 0)
        high = min(int(center + support + f(0.5)), in_size)
        taps = np.arange(low, high).astype(dtype)
        weights = kernel(((taps - center + f(0.5)) * inverse).astype(dtype))
        total = weights.sum(dtype=dtype)
        matrix[row, low:high] = weights / total if total != 0 else weights
    return matrix


def quantize_like_torch(matrix: np.ndarray) -> tuple[np.ndarray, int]:
    """Weights rounded as torch's uint8 kernel rounds them: to multiples of 2**-bits within int16. (W, bits)."""
    top = float(matrix.max())
    bits = 0
    while bits < 22 and int(0.5 + top * (1 << (bits + 1))) < (1 << 15):
        bits += 1
    scaled = matrix * float(1 << bits)
    integers = np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5))
    return integers / float(1 << bits), bits


@dataclass(frozen=True)
class AxisPlan:
    """One axis' resampling: gather `index` (blocks * window) rows, multiply by `weights` (blocks, rows, window).

    `dense` plans have one block whose window is the whole input (no gather). `rounded`: round half up
    and clip to 0..255 after the pass (uint8 images). `dtype`: float32, or float64 where float32 is not exact.
    """

    in_size: int
    out_size: int
    index: np.ndarray
    weights: np.ndarray
    dense: bool
    rounded: bool
    dtype: type


def _banded(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out_size, in_size = matrix.shape
    blocks = -(-out_size // _BLOCK_ROWS)
    nonzero = matrix != 0
    first = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), 0)
    last = np.where(nonzero.any(axis=1), in_size - nonzero[:, ::-1].argmax(axis=1), 1)
    starts = [int(first[b * _BLOCK_ROWS : (b + 1) * _BLOCK_ROWS].min()) for b in range(blocks)]
    ends = [int(last[b * _BLOCK_ROWS : (b + 1) * _BLOCK_ROWS].max()) for b in range(blocks)]
    window = max(end - start for start, end in zip(starts, ends, strict=True))
    index = np.zeros((blocks, window), np.int64)
    weights = np.zeros((blocks, _BLOCK_ROWS, window), matrix.dtype)
    for b, start in enumerate(starts):
        start = min(start, in_size - window)
        index[b] = np.arange(start, start + window)
        rows = matrix[b * _BLOCK_ROWS : (b + 1) * _BLOCK_ROWS, start : start + window]
        weights[b, : rows.shape[0]] = rows
    return index.reshape(-1), weights


@functools.lru_cache(maxsize=256)
def axis_plan(in_size: int, out_size: int, resample: int, rounded: bool) -> AxisPlan:
    """The cached plan resizing one axis from `in_size` to `out_size` (rounded: the uint8 kernel)."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"cannot resize an axis of {in_size} pixels to {out_size}")
    if rounded and resample != NEAREST:
        matrix, bits = quantize_like_torch(filter_matrix(in_size, out_size, resample, np.float64))
        dtype = np.float32 if bits <= _EXACT_FLOAT32_BITS else np.float64
    else:
        matrix, dtype = filter_matrix(in_size, out_size, resample, np.float32), np.float32
    rounded = rounded and resample != NEAREST  # a selection of uint8 values needs no rounding
    dense = in_size < _DENSE_BELOW or out_size <= _BLOCK_ROWS
    if dense:
        index, weights = np.arange(in_size), matrix[None]
    else:
        index, weights = _banded(matrix)
        dense = weights.shape[2] >= in_size
        if dense:
            index, weights = np.arange(in_size), matrix[None]
    weights = np.ascontiguousarray(weights, dtype=dtype)
    weights.flags.writeable = False
    return AxisPlan(in_size, out_size, index, weights, dense, rounded, dtype)
