"""Checkpoints as NumPy: open any weight format as one lazy tensor source, write safetensors.

A tensor source has `path`, `keys()`, `shape(name)`, `get(name)` and `close()`,
and speaks canonical names in PyTorch layout whatever the file's own naming:
`model.safetensors` (PyTorch or TF naming), `pytorch_model.bin`,
`tf_model.h5` (`transformers`' TF port), Keras 3 `model.weights.h5`
(`save_weights`, `blip-convert to-keras`), and sharded sets of each.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from blip_core.checkpoints.h5_probe import check_in_child
from blip_core.checkpoints.h5_reader import H5File, H5ReadError, open_h5
from blip_core.checkpoints.keras_weights import KerasWeightsFile, is_keras3_weights
from blip_core.checkpoints.safetensors_io import SafetensorsFile, write_safetensors
from blip_core.checkpoints.torch_pickle import TorchPickleFile
from blip_core.io.hub import WeightFiles
from blip_core.weights.layouts import from_keras, kind_of_keras_kernel, shape_from_keras
from blip_core.weights.renames import tf_to_canonical


class TensorSource(Protocol):
    path: Path

    def keys(self) -> list[str]: ...
    def shape(self, name: str) -> tuple[int, ...]: ...
    def get(self, name: str) -> np.ndarray: ...
    def close(self) -> None: ...


class TFNamedSource:
    """A source whose names are TensorFlow's (`a/b/kernel:0`), seen in canonical names and layout."""

    def __init__(self, inner: TensorSource) -> None:
        self.path = inner.path
        self._inner = inner
        self._entries: dict[str, tuple[str, str, str]] = {}
        for tf_name in inner.keys():
            name, kind = tf_to_canonical(tf_name)
            try:
                kind = kind or kind_of_keras_kernel(len(inner.shape(tf_name)))
            except ValueError as err:
                raise ValueError(f"{self.path}: tensor {tf_name!r}: {err}") from None
            if name in self._entries:
                raise ValueError(
                    f"{self.path}: tensors {self._entries[name][0]!r} and {tf_name!r} both map to {name!r}"
                )
            self._entries[name] = (tf_name, kind, name.rsplit(".", 1)[-1])

    def keys(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        tf_name, kind, leaf = self._entries[name]
        return shape_from_keras(self._inner.shape(tf_name), kind, leaf)

    def get(self, name: str) -> np.ndarray:
        tf_name, kind, leaf = self._entries[name]
        return np.asarray(from_keras(self._inner.get(tf_name), kind, leaf), order="C")

    def close(self) -> None:
        self._inner.close()


class ArraySource:
    """In-memory arrays (already canonical) seen as a tensor source, e.g. after renaming a foreign file."""

    def __init__(self, path: str | os.PathLike, tensors: Mapping[str, np.ndarray]) -> None:
        self.path = Path(path)
        self._tensors = dict(tensors)

    def keys(self) -> list[str]:
        return list(self._tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._tensors[name].shape)

    def get(self, name: str) -> np.ndarray:
        return self._tensors[name]

    def close(self) -> None:
        """Nothing to release."""


class ShardedSource:
    """Several shard sources seen as one; a name in two shards is an error."""

    def __init__(self, shards: list[TensorSource]) -> None:
        self.path = shards[0].path.parent
        self._owner: dict[str, TensorSource] = {}
        self._shards = shards
        for shard in shards:
            for name in shard.keys():
                if name in self._owner:
                    raise ValueError(
                        f"tensor {name!r} appears in two shards: {self._owner[name].path} and {shard.path}"
                    )
                self._owner[name] = shard

    def keys(self) -> list[str]:
        return list(self._owner)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._owner[name].shape(name)

    def get(self, name: str) -> np.ndarray:
        return self._owner[name].get(name)

    def lend(self, name: str) -> np.ndarray:
        return lend(self._owner[name], name)

    def map_tensor(self, name: str) -> tuple[str, np.ndarray] | None:
        return map_tensor(self._owner[name], name)

    def close(self) -> None:
        for shard in self._shards:
            shard.close()


def lend(source: TensorSource, name: str) -> np.ndarray:
    """`source.lend(name)` where the source can lend (memory-mapped files), else a fresh `get`."""
    lender = getattr(source, "lend", None)
    return lender(name) if lender is not None else source.get(name)


def map_tensor(source: TensorSource, name: str) -> tuple[str, np.ndarray] | None:
    """`source.map_tensor(name)` (file dtype name, copy-on-write view of the file) where the source can map
    the tensor as stored (`SafetensorsFile.map_tensor`), else None: the caller reads it with `get`."""
    mapper = getattr(source, "map_tensor", None)
    return mapper(name) if mapper is not None else None


def _uses_tf_names(source: SafetensorsFile) -> bool:
    if source.metadata.get("format") == "tf":
        return True
    return any(":" in name or "/" in name for name in source.keys())


def open_file(path: str | os.PathLike, fmt: str | None = None) -> TensorSource:
    """Open one weight file; the format comes from `fmt` or the file name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file {path} does not exist")
    fmt = fmt or guess_format(path)
    if fmt == "safetensors":
        source = SafetensorsFile(path)
        return TFNamedSource(source) if _uses_tf_names(source) else source
    if fmt == "bin":
        return TorchPickleFile(path)
    if fmt in ("h5", "keras"):
        check_in_child(Path(path), _open_h5_source, H5ReadError)  # libhdf5 can crash on a crafted file
        return _open_h5_source(path)
    raise ValueError(f"{path}: unknown weight format {fmt!r}; expected safetensors, bin, h5 or keras")


def _open_h5_source(path: Path) -> H5File | KerasWeightsFile:
    return KerasWeightsFile(path) if _is_keras3(path) else H5File(path)


def _is_keras3(path: Path) -> bool:
    """Whether an `.h5` file is a Keras 3 weights file (else the TF port's Keras-2 layout)."""
    with open_h5(path) as h5file:
        return is_keras3_weights(h5file)


def guess_format(path: Path) -> str:
    """The format of a weight file from its name (`.h5` covers both Keras layouts: the content decides)."""
    suffixes = {".safetensors": "safetensors", ".bin": "bin", ".pth": "bin", ".pt": "bin", ".h5": "h5"}
    try:
        return suffixes[path.suffix]
    except KeyError:
        raise ValueError(f"{path}: cannot tell the weight format from its name; expected {sorted(suffixes)}") from None


def open_weights(files: WeightFiles) -> TensorSource:
    """One source over the chosen weight files (shards merged).

    Keras 3 shards are read together: a layer's name may be stored in another shard than its variables.
    """
    if files.format == "keras":
        return KerasWeightsFile(files.paths)
    sources: list[TensorSource] = []
    try:
        for path in files.paths:
            sources.append(open_file(path, files.format))
    except BaseException:
        for source in sources:
            source.close()
        raise
    return sources[0] if len(sources) == 1 else ShardedSource(sources)


def read_all(source: TensorSource, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Every tensor (or the named ones) of a source, loaded."""
    return {name: source.get(name) for name in (names if names is not None else source.keys())}


def save_safetensors(
    path: str | os.PathLike,
    tensors: Mapping[str, np.ndarray],
    *,
    bf16_names: frozenset[str] = frozenset(),
    overwrite: bool = True,
) -> Path:
    """Write canonical tensors to `model.safetensors` atomically, with `format: pt` metadata."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (or --force) to replace it")
    return write_safetensors(path, tensors, metadata={"format": "pt"}, bf16_names=bf16_names)
