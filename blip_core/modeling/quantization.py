"""Int8 weight-only quantization of the text decoder, the rules both trees share: which layers, how the
weights are quantized, and the `quantization=` option of `from_pretrained`.

Decoding is memory-bound: every new token reads every weight of the text decoder once (490 MB in float32
at base size, 123 M parameters). Storing those weights as int8 with one float32 scale per output channel
reads a quarter of that. The vision encoder (compute-bound, run once per image) and the question encoder
of VQA (run once per question) keep their precision.

The scheme is symmetric per-output-channel absmax (as `torchao`'s `Int8WeightOnlyConfig` and Keras'
`quantize("int8")` quantize weights): `scale = max|w_row| / 127`, `q = round(w / scale)` in [-127, 127].
A product is computed as `(x @ q.T) * scale + bias` with `x` in bfloat16 and float32 accumulation.
Both trees quantize the same numbers here, in NumPy, so their int8 weights are identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np

QUANTIZATION_MODES = ("int8",)
# The modules quantized: every linear layer under these (torch module paths, the canonical names' prefixes):
# the text decoder's self- and cross-attention (the image key/value projections included), its feed-forward
# layers and its LM head.
QUANTIZED_MODULES = ("text_decoder",)
INT8_MAX = 127


def check_quantization(class_name: str, quantization: Any, modules: list[str]) -> str | None:
    """The quantization mode asked of `<class_name>.from_pretrained` / `.quantize`, checked; None for none.

    `modules` are the model's top-level module names.

    Raises:
        ValueError: an unknown mode, or a model without a text decoder (nothing would be quantized).
    """
    if quantization is None:
        return None
    if quantization not in QUANTIZATION_MODES:
        raise ValueError(
            f"{class_name}: quantization={quantization!r} is not supported; expected one of {QUANTIZATION_MODES} "
            "(int8 weight-only decoding) or None"
        )
    if not any(name in QUANTIZED_MODULES for name in modules):
        raise ValueError(
            f"{class_name}: quantization={quantization!r} quantizes a text decoder's linear layers, and "
            f"{class_name} has none (it does not generate); load it in float32 or bfloat16 with dtype="
        )
    return quantization


def is_quantized_module(path: str) -> bool:
    """Whether the linear layer at this module path (torch names, e.g. `text_decoder.cls.predictions.decoder`)
    is quantized."""
    return any(path == prefix or path.startswith(prefix + ".") for prefix in QUANTIZED_MODULES)


def quantize_int8(weight: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 quantization with one scale per output channel.

    Args:
        weight: a float matrix; `axis` is its output-channel axis (0 for torch's (out, in), 1 for Keras' (in, out)).

    Returns:
        (q, scale): `q` int8 of the same shape, in [-127, 127]; `scale` float32 (out,), with
        `weight ~= q * scale` along `axis`. A row of zeros gets scale 1 (and q 0).

    Raises:
        ValueError: not a 2-D array, or a value that is not finite.
    """
    weight = np.asarray(weight, dtype=np.float32)
    if weight.ndim != 2:
        raise ValueError(f"quantize_int8 expects a 2-D weight, got shape {weight.shape}")
    if not np.isfinite(weight).all():
        raise ValueError("quantize_int8: the weight holds NaN or infinite values")
    other = 1 - axis
    absmax = np.abs(weight).max(axis=other)
    scale = np.where(absmax > 0, absmax / INT8_MAX, 1.0).astype(np.float32)
    shaped = scale[:, None] if axis == 0 else scale[None, :]
    q = np.clip(np.rint(weight / shaped), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scale
