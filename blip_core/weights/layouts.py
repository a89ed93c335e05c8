"""The only place arrays change layout between PyTorch and Keras.

PyTorch Linear weights are (out, in); Keras Dense kernels are (in, out).
PyTorch Conv2d weights are (out, in, kh, kw); Keras Conv2D kernels are
(kh, kw, in, out). Everything else (biases, norms, embeddings, raw
parameters) is stored the same way in both.
"""

from __future__ import annotations

import numpy as np

from blip_core.weights.names import CONV2D, EMBEDDING, LINEAR, NORM, RAW

# (kind, torch leaf) -> Keras variable name on the layer.
KERAS_VARIABLE_NAMES: dict[tuple[str, str], str] = {
    (LINEAR, "weight"): "kernel",
    (LINEAR, "bias"): "bias",
    (CONV2D, "weight"): "kernel",
    (CONV2D, "bias"): "bias",
    (NORM, "weight"): "gamma",
    (NORM, "bias"): "beta",
    (EMBEDDING, "weight"): "embeddings",
}

# Checkpoint name segments Keras reserves as layer attributes, and the attribute each TF layer uses instead.
KERAS_ATTRIBUTES: dict[str, str] = {"output": "output_layer"}

# (kind, torch leaf) -> axes permutation from torch layout to Keras layout.
_TO_KERAS_AXES: dict[tuple[str, str], tuple[int, ...]] = {
    (LINEAR, "weight"): (1, 0),  # (O, I) -> (I, O)
    (CONV2D, "weight"): (2, 3, 1, 0),  # (O, I, KH, KW) -> (KH, KW, I, O)
}


def keras_attribute(segment: str) -> str:
    """The Keras layer attribute that holds a checkpoint name segment."""
    return KERAS_ATTRIBUTES.get(segment, segment)


def keras_variable_name(kind: str, leaf: str) -> str:
    """Keras name of a parameter; raw parameters keep their own name."""
    if kind == RAW:
        return leaf
    return KERAS_VARIABLE_NAMES[(kind, leaf)]


def keras_axes(kind: str, leaf: str) -> tuple[int, ...] | None:
    """The permutation from torch layout to Keras layout, None where the layouts agree."""
    return _TO_KERAS_AXES.get((kind, leaf))


def to_keras(array: np.ndarray, kind: str, leaf: str) -> np.ndarray:
    """A torch-layout array in the layout Keras stores it (a view where possible)."""
    axes = _TO_KERAS_AXES.get((kind, leaf))
    return array if axes is None else np.transpose(array, axes)


def from_keras(array: np.ndarray, kind: str, leaf: str) -> np.ndarray:
    """A Keras-layout array in torch layout (a view where possible)."""
    axes = _TO_KERAS_AXES.get((kind, leaf))
    return array if axes is None else np.transpose(array, np.argsort(axes))


def shape_from_keras(shape: tuple[int, ...], kind: str, leaf: str) -> tuple[int, ...]:
    """The torch-layout shape of a Keras-layout shape."""
    axes = _TO_KERAS_AXES.get((kind, leaf))
    return tuple(shape) if axes is None else tuple(shape[i] for i in np.argsort(axes))


def shape_to_keras(shape: tuple[int, ...], kind: str, leaf: str) -> tuple[int, ...]:
    """The Keras-layout shape of a torch-layout shape."""
    axes = _TO_KERAS_AXES.get((kind, leaf))
    return tuple(shape) if axes is None else tuple(shape[i] for i in axes)


def kind_of_keras_kernel(ndim: int) -> str:
    """A Keras `kernel` is a Dense (2-D) or a Conv2D (4-D) weight."""
    kinds = {2: LINEAR, 4: CONV2D}
    if ndim not in kinds:
        raise ValueError(f"a Keras kernel must be 2-D (Dense) or 4-D (Conv2D), got {ndim}-D")
    return kinds[ndim]
