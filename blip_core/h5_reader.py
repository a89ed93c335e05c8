"""Read a `transformers` TensorFlow `tf_model.h5` (Keras-2 HDF5 weights) as canonical tensors.

Names follow REFERENCE §3.2 (`renames.tf_to_canonical`); arrays come back in
PyTorch layout (`layouts.from_keras`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.weights.layouts import from_keras, kind_of_keras_kernel, shape_from_keras
from blip_core.weights.renames import tf_to_canonical


class H5ReadError(ValueError):
    """An h5 file that cannot be read as TF weights; names the file and the dataset."""


def _decode(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _dataset_paths(h5file: Any) -> list[str]:
    """Dataset paths in file order: from `layer_names`/`weight_names` when present, else a walk."""
    import h5py

    layer_names = h5file.attrs.get("layer_names")
    if layer_names is not None:
        paths = []
        for layer in map(_decode, layer_names):
            group = h5file.get(layer)
            if group is None:
                continue
            names = group.attrs.get("weight_names")
            if names is None:
                continue
            paths.extend(f"{layer}/{_decode(name)}" for name in names)
        if paths:
            return paths
    found: list[str] = []
    h5file.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


class H5File:
    """A `tf_model.h5` as a tensor source: `keys()`, `shape(name)`, `get(name)`."""

    def __init__(self, path: str | os.PathLike) -> None:
        try:
            import h5py
        except ImportError:
            raise H5ReadError("reading tf_model.h5 needs h5py: pip install h5py") from None
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
            paths = _dataset_paths(self._file)
        except OSError as err:
            raise H5ReadError(f"{self.path} is not a readable HDF5 file (truncated or damaged): {err}") from None
        self._entries: dict[str, tuple[str, str, str]] = {}
        for dataset_path in paths:
            dataset = self._file.get(dataset_path)
            if dataset is None:
                raise H5ReadError(f"{self.path}: dataset {dataset_path!r} listed in weight_names is missing")
            name, kind = tf_to_canonical(dataset_path)
            kind = kind or kind_of_keras_kernel(dataset.ndim)
            if name in self._entries:
                raise H5ReadError(f"{self.path}: two datasets map to {name!r} ({dataset_path!r})")
            self._entries[name] = (dataset_path, kind, name.rsplit(".", 1)[-1])

    def keys(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        path, kind, leaf = self._entries[name]
        return shape_from_keras(self._file[path].shape, kind, leaf)

    def dtype(self, name: str) -> str:
        return str(self._file[self._entries[name][0]].dtype)

    def get(self, name: str) -> np.ndarray:
        path, kind, leaf = self._entries[name]
        try:
            array = np.asarray(self._file[path][()])
        except OSError as err:
            raise H5ReadError(f"{self.path}: cannot read dataset {path!r}: {err}") from None
        return np.asarray(from_keras(array, kind, leaf), order="C")

    def close(self) -> None:
        self._file.close()
