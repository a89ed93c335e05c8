"""Read `torch.save` zip archives (`pytorch_model.bin`, `.pth`) without torch and without
executing code.

The pickle may name only tensor rebuilders, storage types and `OrderedDict`
(what the Hub's pickle scanner lists for BLIP files); any other global is
refused with an error that names it. Tensors stay lazy until asked for.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.safetensors_io import bf16_bits_to_float32

_STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "bf16",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class TorchPickleError(ValueError):
    """A `.bin`/`.pth` file that is not a safe, readable torch zip archive."""


@dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: str


@dataclass(frozen=True)
class _Storage:
    dtype: str
    key: str


@dataclass(frozen=True)
class LazyTensor:
    """A tensor of the archive, read only when `load()` is called."""

    archive: TorchArchive
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def dtype(self) -> str:
        return self.storage.dtype

    def load(self) -> np.ndarray:
        raw = self.archive.storage_bytes(self.storage.key)
        base = np.frombuffer(raw, dtype="<u2" if self.dtype == "bf16" else self.dtype)
        if self.archive.big_endian:
            base = base.byteswap()
        itemsize = base.itemsize
        span = sum((n - 1) * s for n, s in zip(self.shape, self.stride, strict=True)) + 1
        needed = self.offset + (span if all(self.shape) else 0)
        if needed > base.size:
            raise TorchPickleError(f"{self.archive.path}: storage {self.storage.key} is too short for its tensor")
        view = np.lib.stride_tricks.as_strided(
            base[self.offset :], shape=self.shape, strides=tuple(s * itemsize for s in self.stride)
        )
        array = np.array(view)  # own the memory: the zip bytes can go
        return bf16_bits_to_float32(array) if self.dtype == "bf16" else array


def _rebuild_tensor_v2(storage: _Storage, offset: int, size: Any, stride: Any, *_: Any) -> tuple:
    return ("tensor", storage, int(offset), tuple(int(n) for n in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


def _fresh(function: Any) -> Any:
    """A new callable per lookup, so a crafted pickle cannot alter a shared object."""
    return lambda *args: function(*args)


# Each entry makes the object handed to the pickle; nothing else can be named.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): lambda: _fresh(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): lambda: _fresh(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): lambda: _fresh(_rebuild_parameter),
    **{("torch", name): (lambda n=name, d=dtype: _StorageType(n, d)) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, stream: Any, path: Path) -> None:
        super().__init__(stream)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            make = _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise TorchPickleError(
                f"{self._path}: refused to load: its pickle asks for the global {module}.{name}; "
                "a checkpoint may only hold tensors, storages and OrderedDict"
            ) from None
        return make()

    def persistent_load(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple):
            raise TorchPickleError(f"{self._path}: unsupported persistent id {pid!r:.80}")
        valid_type = len(pid) >= 3 and isinstance(pid[1], _StorageType) and pid[1].dtype in _STORAGE_DTYPES.values()
        if not (isinstance(pid, tuple) and pid[0] == "storage" and valid_type):
            raise TorchPickleError(f"{self._path}: unsupported persistent id {pid!r:.80}")
        return _Storage(pid[1].dtype, str(pid[2]))


class TorchArchive:
    """An opened `torch.save` zip archive and its unpickled object tree."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not zipfile.is_zipfile(self.path):
            raise TorchPickleError(
                f"{self.path} is not a torch zip archive (truncated, or the legacy pre-1.6 format: "
                "re-save it with a recent torch)"
            )
        try:
            self._zip = zipfile.ZipFile(self.path)
            names = self._zip.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            raise TorchPickleError(f"{self.path} is a damaged zip archive: {err}") from None
        pickles = [name for name in names if name.endswith("data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise TorchPickleError(f"{self.path} has no single '<name>/data.pkl' record; not a torch checkpoint")
        self._prefix = pickles[0][: -len("data.pkl")]
        byteorder = f"{self._prefix}byteorder"
        self.big_endian = byteorder in names and self._zip.read(byteorder).strip() == b"big"
        try:
            with self._zip.open(pickles[0]) as stream:
                tree = _RestrictedUnpickler(stream, self.path).load()
        except TorchPickleError:
            raise
        except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError, AttributeError) as err:
            raise TorchPickleError(f"{self.path}: cannot unpickle: {err}") from None
        self.tree = self._materialize(tree)

    def _materialize(self, node: Any) -> Any:
        """Turn rebuild records into LazyTensors, recursively through dicts and lists."""
        if isinstance(node, tuple) and len(node) == 5 and node[0] == "tensor" and isinstance(node[1], _Storage):
            return LazyTensor(self, node[1], node[2], node[3], node[4])
        if isinstance(node, dict):
            return type(node)((key, self._materialize(value)) for key, value in node.items())
        if isinstance(node, (list, tuple)):
            return type(node)(self._materialize(value) for value in node)
        return node

    def storage_bytes(self, key: str) -> bytes:
        try:
            return self._zip.read(f"{self._prefix}data/{key}")
        except (KeyError, zipfile.BadZipFile, OSError) as err:
            raise TorchPickleError(f"{self.path}: storage {key} is missing or damaged: {err}") from None

    def close(self) -> None:
        self._zip.close()


def find_state_dict(tree: Any, path: Path, key: str | None = None) -> dict[str, LazyTensor]:
    """The flat name -> tensor mapping of a checkpoint (`{"model": ...}` wrappers unwrapped)."""
    if key is not None:
        if not isinstance(tree, dict) or key not in tree:
            raise TorchPickleError(f"{path}: no entry {key!r} at the top of the checkpoint")
        tree = tree[key]
    elif isinstance(tree, dict) and not any(isinstance(v, LazyTensor) for v in tree.values()):
        for candidate in ("model", "state_dict", "module"):
            if isinstance(tree.get(candidate), dict):
                tree = tree[candidate]
                break
    if not isinstance(tree, dict):
        raise TorchPickleError(f"{path}: expected a state dict (name -> tensor), found {type(tree).__name__}")
    tensors = {name: value for name, value in tree.items() if isinstance(value, LazyTensor)}
    if not tensors:
        raise TorchPickleError(f"{path} holds no tensors")
    return tensors


class TorchPickleFile:
    """A `pytorch_model.bin` as a tensor source: `keys()`, `shape(name)`, `get(name)`."""

    def __init__(self, path: str | os.PathLike, key: str | None = None) -> None:
        self.path = Path(path)
        self._archive = TorchArchive(self.path)
        self._tensors = find_state_dict(self._archive.tree, self.path, key)

    def keys(self) -> list[str]:
        return list(self._tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._tensors[name].shape

    def dtype(self, name: str) -> str:
        return self._tensors[name].dtype

    def get(self, name: str) -> np.ndarray:
        return self._tensors[name].load()

    def close(self) -> None:
        self._archive.close()
