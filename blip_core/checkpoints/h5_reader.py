"""Read HDF5 weight files safely, and `transformers`' TensorFlow `tf_model.h5` (Keras-2 HDF5 weights,
sharded too) as canonical tensors.

Names follow REFERENCE §3.2 (`renames.tf_to_canonical`); arrays come back in
PyTorch layout (`layouts.from_keras`). The helpers here are shared with the
Keras 3 reader (`blip_core.checkpoints.keras_weights`): they follow hard links only (never
soft or external links), refuse external and virtual datasets, and check a
dataset's dtype and declared size before reading it. Every error names the
file and the dataset.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.checkpoints.safetensors_io import bf16_bits_to_float32
from blip_core.weights.layouts import from_keras, kind_of_keras_kernel, shape_from_keras
from blip_core.weights.renames import tf_to_canonical

MAX_DEPTH = 64  # groups nested deeper than this are refused (a hard-link cycle never ends)
MAX_OBJECTS = 200_000  # groups and datasets walked in one file
# A dataset that declares more than this many bytes must store at least 1/BOMB_RATIO of them:
# a chunked dataset of fill values or a highly compressed one would otherwise allocate gigabytes.
BOMB_FLOOR_BYTES = 64 * 2**20
BOMB_RATIO = 100
FLOAT_KINDS = ("f",)
BF16 = "bfloat16"
# HDF5's built-in filters (deflate, shuffle, fletcher32, szip, n-bit, scale-offset) and h5py's LZF: any other
# filter id would make HDF5 search its plugin folder for a shared library to load.
ALLOWED_FILTERS = frozenset({1, 2, 3, 4, 5, 6, 32000})
# What h5py/HDF5 raise on damaged files; turned into H5ReadError naming the file.
H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError)


class H5ReadError(ValueError):
    """An h5 file that cannot be read as weights; names the file and the dataset."""


def _decode(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_attr(node: Any, key: str, file_path: Path) -> Any:
    """`node.attrs.get(key)` (None when absent); `H5ReadError` for an attribute HDF5 cannot read, or one that
    declares more than `MAX_OBJECTS` elements (checked before reading: a damaged header can claim billions)."""
    import h5py

    try:
        if key not in node.attrs:
            return None
        shape = h5py.h5a.open(node.id, key.encode()).shape
        count = int(np.prod(shape, dtype=object)) if shape else 1
        if count > MAX_OBJECTS:
            raise H5ReadError(
                f"{file_path}: attribute {key!r} of {node.name!r} declares {count} elements; refused (at most "
                f"{MAX_OBJECTS})"
            )
        return node.attrs.get(key)
    except H5ReadError:
        raise
    except H5_ERRORS as err:
        raise H5ReadError(f"{file_path}: cannot read attribute {key!r} of {node.name!r}: {err}") from None


def name_list(node: Any, key: str, file_path: Path) -> list[str]:
    """A string-list attribute (`layer_names`, `weight_names`): [] when absent, `H5ReadError` when not strings."""
    value = read_attr(node, key, file_path)
    if value is None:
        return []
    array = np.asarray(value)
    if array.ndim > 1 or array.dtype.kind not in "SUO" or array.size > MAX_OBJECTS:
        raise H5ReadError(f"{file_path}: attribute {key!r} of {node.name!r} is not a list of names")
    names = [item for item in array.reshape(-1)]
    if not all(isinstance(item, (bytes, str)) for item in names):
        raise H5ReadError(f"{file_path}: attribute {key!r} of {node.name!r} is not a list of names")
    return [_decode(item) for item in names]


def open_h5(path: str | os.PathLike) -> Any:
    """An `h5py.File` opened read-only; `H5ReadError` for a file HDF5 cannot open."""
    try:
        import h5py
    except ImportError:
        raise H5ReadError("reading .h5 weights needs h5py: pip install h5py") from None
    try:
        return h5py.File(Path(path), "r")
    except H5_ERRORS as err:
        raise H5ReadError(f"{path} is not a readable HDF5 file (truncated or damaged): {err}") from None


def child(group: Any, name: str, file_path: Path) -> Any:
    """`group[name]` through a hard link only; soft and external links are refused."""
    import h5py

    where = f"{group.name.rstrip('/')}/{name}"
    try:
        link = group.get(name, getlink=True)
    except H5_ERRORS as err:
        raise H5ReadError(f"{file_path}: cannot read the link {where!r}: {err}") from None
    if link is None:
        raise H5ReadError(f"{file_path}: {where!r} does not exist")
    if not isinstance(link, h5py.HardLink):
        raise H5ReadError(f"{file_path}: {where!r} is a {type(link).__name__}; only hard links are followed")
    try:
        return group[name]
    except H5_ERRORS as err:
        raise H5ReadError(f"{file_path}: cannot open {where!r}: {err}") from None


def resolve(h5file: Any, path: str, file_path: Path) -> Any:
    """The object at `a/b/c`, walking hard links only."""
    node = h5file
    for part in path.strip("/").split("/"):
        if not part:
            raise H5ReadError(f"{file_path}: invalid path {path!r}")
        node = child(node, part, file_path)
    return node


def walk(h5file: Any, file_path: Path) -> Iterator[tuple[str, Any]]:
    """(path, object) of every group and dataset, depth first in name order, through hard links only."""
    import h5py

    count = 0
    stack: list[tuple[str, Any, int]] = [("", h5file, 0)]
    while stack:
        prefix, group, depth = stack.pop()
        if depth >= MAX_DEPTH:
            raise H5ReadError(f"{file_path}: groups nested deeper than {MAX_DEPTH} levels at {prefix!r}")
        children = []
        try:
            names = sorted(group.keys())
        except H5_ERRORS as err:
            raise H5ReadError(f"{file_path}: cannot list the group {prefix or '/'!r}: {err}") from None
        for name in names:
            count += 1
            if count > MAX_OBJECTS:
                raise H5ReadError(f"{file_path}: more than {MAX_OBJECTS} objects; not a weights file")
            node = child(group, name, file_path)
            path = f"{prefix}{name}"
            children.append((path, node))
            if isinstance(node, h5py.Group):
                stack.append((path + "/", node, depth + 1))
        yield from children


def dataset_dtype(dataset: Any, file_path: Path, path: str) -> str:
    """The checked dtype of a weight dataset ("float32", ..., or "bfloat16"); refuses what is not a weight.

    Also refuses external and virtual datasets, filters outside `ALLOWED_FILTERS`, and declared sizes
    the file does not back. Raises `H5ReadError` naming the file and the dataset.
    """
    import h5py

    if not isinstance(dataset, h5py.Dataset):
        raise H5ReadError(f"{file_path}: {path!r} is a {type(dataset).__name__}, not a dataset")
    try:
        return _checked_dtype(dataset, file_path, path)
    except H5_ERRORS as err:
        if isinstance(err, H5ReadError):
            raise
        raise H5ReadError(f"{file_path}: cannot inspect dataset {path!r}: {err}") from None


def _checked_dtype(dataset: Any, file_path: Path, path: str) -> str:
    if dataset.external:
        raise H5ReadError(f"{file_path}: dataset {path!r} stores its data in an external file; refused")
    if dataset.is_virtual:
        raise H5ReadError(f"{file_path}: dataset {path!r} is a virtual dataset; refused")
    if dataset.shape is None:
        raise H5ReadError(f"{file_path}: dataset {path!r} holds no array (an empty dataspace)")
    dtype = dataset.dtype
    plain = dtype.names is None and dtype.subdtype is None
    is_bf16 = (
        plain
        and dtype.kind == "V"
        and dtype.itemsize == 2
        and _decode(read_attr(dataset, "dtype", file_path) or "") == BF16
    )
    if not is_bf16 and (not plain or dtype.kind not in FLOAT_KINDS or dtype.itemsize not in (2, 4, 8)):
        raise H5ReadError(f"{file_path}: dataset {path!r} has dtype {dtype}, expected a float weight")
    plist = dataset.id.get_create_plist()
    for index in range(plist.get_nfilters()):
        code = plist.get_filter(index)[0]
        if code not in ALLOWED_FILTERS:
            raise H5ReadError(f"{file_path}: dataset {path!r} uses the HDF5 filter {code}, not a built-in one; refused")
    _check_storage(dataset, file_path, path, int(np.prod(dataset.shape, dtype=object)) * dtype.itemsize)
    return BF16 if is_bf16 else np.dtype(dtype).newbyteorder("=").name


def _check_storage(dataset: Any, file_path: Path, path: str, declared: int) -> None:
    """Refuse a dataset whose declared bytes the file does not hold (a size bomb, or data past its end)."""
    stored = dataset.id.get_storage_size()
    if declared > BOMB_FLOOR_BYTES and declared > BOMB_RATIO * stored:
        raise H5ReadError(
            f"{file_path}: dataset {path!r} declares {declared} bytes but stores {stored}; refused (a size bomb)"
        )
    offset = dataset.id.get_offset()  # contiguous data only: where it starts in the file
    if offset is not None and offset + declared > file_path.stat().st_size:
        raise H5ReadError(f"{file_path}: dataset {path!r} ends past the end of the file (truncated or damaged)")


def read_dataset(dataset: Any, file_path: Path, path: str) -> np.ndarray:
    """A checked dataset's values in native byte order; bfloat16 widened to float32 exactly."""
    dtype = dataset_dtype(dataset, file_path, path)
    try:
        array = np.asarray(dataset[()])
    except H5_ERRORS as err:
        raise H5ReadError(f"{file_path}: cannot read dataset {path!r}: {err}") from None
    if dtype == BF16:
        return bf16_bits_to_float32(array.view("<u2"))
    return array.astype(array.dtype.newbyteorder("="), copy=False)


_LAYER_NAME = re.compile(r"[\w./:\-]{1,512}")


def _tf_port_paths(h5file: Any, file_path: Path) -> list[str]:
    """Dataset paths of a TF-port file in file order: from `layer_names`/`weight_names` when present
    (a shard lists its datasets in `layer_names` directly), else a walk."""
    import h5py

    paths: list[str] = []
    for layer in name_list(h5file, "layer_names", file_path):
        if not _LAYER_NAME.fullmatch(layer):
            raise H5ReadError(f"{file_path}: invalid layer name {layer[:80]!r} in layer_names")
        node = resolve(h5file, layer, file_path)
        if isinstance(node, h5py.Dataset):
            paths.append(layer)
            continue
        for name in name_list(node, "weight_names", file_path):
            paths.append(f"{layer}/{name}")
    if paths:
        return paths
    return [path for path, node in walk(h5file, file_path) if isinstance(node, h5py.Dataset)]


class H5File:
    """A `tf_model.h5` (or one shard of it) as a tensor source: `keys()`, `shape(name)`, `get(name)`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file = open_h5(self.path)
        try:
            self._entries = self._index()
        except BaseException:
            self._file.close()
            raise

    def _index(self) -> dict[str, tuple[str, str, str]]:
        entries: dict[str, tuple[str, str, str]] = {}
        for dataset_path in _tf_port_paths(self._file, self.path):
            dataset = resolve(self._file, dataset_path, self.path)
            dataset_dtype(dataset, self.path, dataset_path)
            name, kind = tf_to_canonical(dataset_path)
            if kind is None:
                try:
                    kind = kind_of_keras_kernel(dataset.ndim)
                except ValueError as err:
                    raise H5ReadError(f"{self.path}: dataset {dataset_path!r}: {err}") from None
            if name in entries:
                raise H5ReadError(f"{self.path}: two datasets map to {name!r} ({dataset_path!r})")
            entries[name] = (dataset_path, kind, name.rsplit(".", 1)[-1])
        return entries

    def keys(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        path, kind, leaf = self._entries[name]
        return shape_from_keras(resolve(self._file, path, self.path).shape, kind, leaf)

    def dtype(self, name: str) -> str:
        path = self._entries[name][0]
        return dataset_dtype(resolve(self._file, path, self.path), self.path, path)

    def get(self, name: str) -> np.ndarray:
        path, kind, leaf = self._entries[name]
        array = read_dataset(resolve(self._file, path, self.path), self.path, path)
        return np.asarray(from_keras(array, kind, leaf), order="C")

    def close(self) -> None:
        self._file.close()
