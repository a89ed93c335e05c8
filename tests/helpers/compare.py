"""One way to compare outputs: flatten to path -> array, one tolerance, name the worst element."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# Float32 parity bound: absolute 1e-4, relative to the value's magnitude where it exceeds 1.
TOLERANCE = 1e-4


def to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    return np.asarray(value)


def flatten(value: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Every tensor inside nested outputs/dicts/tuples, keyed by its path (`text_model_output.last_hidden_state`)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        out: dict[str, np.ndarray] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, (list, tuple)):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{index}]"))
        return out
    if isinstance(value, (bool, int, float, str)) or not hasattr(value, "shape") and not hasattr(value, "__array__"):
        return {} if not isinstance(value, (int, float)) else {prefix: np.asarray(value)}
    return {prefix: to_numpy(value)}


def worst_difference(actual: np.ndarray, expected: np.ndarray) -> tuple[float, tuple]:
    """(scaled error, index) of the element that breaks the bound the most."""
    actual, expected = actual.astype(np.float64), expected.astype(np.float64)
    scaled = np.abs(actual - expected) / np.maximum(1.0, np.abs(expected))
    if scaled.size == 0:
        return 0.0, ()
    index = np.unravel_index(np.nanargmax(np.where(np.isnan(scaled), np.inf, scaled)), scaled.shape)
    return float(scaled[index]), tuple(int(i) for i in index)


def assert_outputs_close(
    actual: Any, expected: Any, tolerance: float = TOLERANCE, only: set[str] | None = None
) -> float:
    """Compare every path of `expected` with `actual`; return the worst scaled error."""
    actual_flat = (
        actual
        if isinstance(actual, dict) and all(isinstance(v, np.ndarray) for v in actual.values())
        else flatten(actual)
    )
    expected_flat = (
        expected
        if isinstance(expected, dict) and all(isinstance(v, np.ndarray) for v in expected.values())
        else flatten(expected)
    )
    paths = only if only is not None else set(expected_flat)
    missing = sorted(paths - set(actual_flat))
    assert not missing, f"outputs missing: {missing}; present: {sorted(actual_flat)}"
    worst, worst_path, worst_index = 0.0, None, ()
    for path in sorted(paths):
        a, e = actual_flat[path], expected_flat[path]
        assert a.shape == e.shape, f"{path}: shape {a.shape} != expected {e.shape}"
        if a.dtype.kind in "iub" and e.dtype.kind in "iub":
            assert np.array_equal(a, e), f"{path}: integer values differ at {np.argwhere(a != e)[:5].tolist()}"
            continue
        error, index = worst_difference(a, e)
        if error > worst or worst_path is None:
            worst, worst_path, worst_index = error, path, index
    assert worst <= tolerance, (
        f"worst output {worst_path}{list(worst_index)}: scaled error {worst:.3g} > {tolerance} "
        f"(actual {actual_flat[worst_path][worst_index]}, expected {expected_flat[worst_path][worst_index]})"
    )
    return worst
