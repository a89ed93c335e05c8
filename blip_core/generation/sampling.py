"""Per-image seeded sampling (`generate(..., sampling_seeds=[...])`), framework-neutral (NumPy only).

Each image's random numbers come from its own seed alone: row r of image i
draws from NumPy's Philox keyed by `(sampling_seeds[i], r)`, so a record's
sampled captions do not depend on the batch it ran in, its position there, the
worker or the framework. Both trees pick a token from a row's processed scores
and its uniform u of the step by the inverse CDF, in float64: the first index
whose cumulative probability reaches `u * total`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from blip_core.generation.rules import GenerationArgumentError


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def key_seed(seed: int, key: str) -> int:
    """A stable seed in [0, 2**63) for the record `key` of a run seeded `seed` (sha256; the same in every process).

    Raises TypeError when `seed` is not an int or `key` not a str, ValueError when `seed` is negative.
    """
    if not _is_int(seed):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__}")
    digest = hashlib.sha256(f"{int(seed)}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def row_uniforms(seeds: Sequence[int], repeats: int, steps: int) -> np.ndarray:
    """Uniforms in (0, 1], float64 `(len(seeds) * repeats, steps)`, image-major (rows i*repeats .. +repeats-1).

    Row (i, r) is `1 - Generator(Philox(SeedSequence([seeds[i], r]))).random(steps)`: its first t values do not
    depend on `steps`, nor the row on `repeats` or on the other seeds.
    """
    rows = np.empty((len(seeds) * repeats, steps), np.float64)
    for i, seed in enumerate(seeds):
        for r in range(repeats):
            generator = np.random.Generator(np.random.Philox(np.random.SeedSequence([int(seed), r])))
            rows[i * repeats + r] = 1.0 - generator.random(steps)
    return rows


def pick_index(probs: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """The inverse-CDF pick both trees run: int64 (rows,) from probabilities (rows, V) and uniforms (rows,) in
    (0, 1]: the number of entries whose cumulative sum is below `u * total`, at most V-1 (a token of zero
    probability is never picked)."""
    cdf = np.cumsum(np.asarray(probs, np.float64), axis=-1)
    below = cdf < np.asarray(uniforms, np.float64)[:, None] * cdf[:, -1:]
    return np.minimum(below.sum(-1), cdf.shape[-1] - 1).astype(np.int64)


def as_sampling_seeds(value: Any, do_sample: bool, num_beams: int) -> tuple[int, ...] | None:
    """The `sampling_seeds` argument as a tuple of ints (None when not given).

    Raises TypeError for a value that is not a sequence of ints, ValueError for a negative seed, and
    `GenerationArgumentError` (a ValueError) unless sampling (`do_sample=True`) without beams (`num_beams=1`).
    """
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise TypeError(f"sampling_seeds must be one int per image (1-D), got an array of shape {value.shape}")
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"sampling_seeds must be a sequence of ints (one per image), got {type(value).__name__}")
    for index, seed in enumerate(value):
        if not _is_int(seed):
            raise TypeError(f"sampling_seeds[{index}] must be an int, got {type(seed).__name__} {seed!r}")
        if seed < 0:
            raise ValueError(f"sampling_seeds[{index}] must be non-negative, got {seed}")
    if not do_sample or num_beams != 1:
        raise GenerationArgumentError(
            f"sampling_seeds needs do_sample=True and num_beams=1 (got do_sample={do_sample}, num_beams={num_beams})"
        )
    return tuple(int(seed) for seed in value)


def check_sampling_seeds(seeds: tuple[int, ...] | None, rows: int, what: str = "images") -> None:
    """ValueError when `sampling_seeds` was given but does not hold one seed per image (`what`: per question
    for VQA, where one image may go with many questions)."""
    if seeds is not None and len(seeds) != rows:
        raise ValueError(f"sampling_seeds holds {len(seeds)} seeds but the batch has {rows} {what} (one seed each)")
