"""Read `torch.save` zip archives (`pytorch_model.bin`, `.pth`) without torch and without
executing code.

The pickle may name only tensor rebuilders, storage types and `OrderedDict`
(what the Hub's pickle scanner lists for BLIP files); any other global is
refused with an error that names it, whichever opcode asks for it. The
unpickler builds containers only: no constructor, `__setstate__` or
`__new__` of any class runs, dict keys are plain scalars (hashing stays
linear), and shared references stay shared (a pickle of nested `[x, x]` is
never expanded). Tensors stay lazy until asked for; each one must lie, without
overlapping itself, inside a storage record that the archive really holds, and
compressed records are bounded before they are inflated.
"""

from __future__ import annotations

import collections
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.checkpoints.safetensors_io import bf16_bits_to_float32

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
MAX_PICKLE_BYTES = 64 * 2**20  # a BLIP state dict's pickle is well under 1 MB
MAX_DIMS = 64  # torch's own limit on tensor dimensions
MAX_CALL_ARGS = 8  # the rebuild functions take at most 7
# A compressed record that inflates to more than this must not inflate more than BOMB_RATIO times
# (torch writes its records uncompressed; real weights deflate by ~1.1).
BOMB_FLOOR_BYTES = 64 * 2**20
BOMB_RATIO = 100
_STORAGE_KEY = re.compile(r"[\w.\-]{1,128}")
_SCALAR_KEYS = (str, bytes, bool, float, type(None))


class TorchPickleError(ValueError):
    """A `.bin`/`.pth` file that is not a safe, readable torch zip archive; names the file and the reason."""


def _itemsize(dtype: str) -> int:
    return 2 if dtype == "bf16" else np.dtype(dtype).itemsize


@dataclass(frozen=True, slots=True)
class _StorageType:
    name: str
    dtype: str


@dataclass(frozen=True, slots=True)
class _Storage:
    dtype: str
    key: str
    numel: int


def view_problem(shape: tuple[int, ...], stride: tuple[int, ...], offset: int, numel: int) -> str | None:
    """Why a strided view cannot be read from a storage of `numel` elements (None when it can).

    Refused: negative offsets, sizes or strides; views that reach an element twice (a zero or
    overlapping stride: their copy would exceed the storage); any element outside the storage.
    """
    if offset < 0:
        return f"negative storage offset {offset}"
    if any(n < 0 for n in shape):
        return f"negative size in shape {shape}"
    if any(s < 0 for s in stride):
        return f"negative stride in {stride}"
    if 0 in shape:
        return None
    extent = 0  # the largest element index reached, relative to `offset`
    for step, size in sorted((s, n) for n, s in zip(shape, stride, strict=True) if n > 1):
        if step <= extent:
            return f"stride {step} in {stride} makes elements overlap (shape {shape})"
        extent += (size - 1) * step
    if offset + extent >= numel:
        return f"elements {offset}..{offset + extent} lie outside its storage of {numel} elements"
    return None


@dataclass(frozen=True, slots=True)
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

    def problem(self) -> str | None:
        """Why this tensor cannot be read from its storage (None when it can)."""
        return view_problem(self.shape, self.stride, self.offset, self.storage.numel)

    def load(self) -> np.ndarray:
        """The tensor's values as a fresh array (bfloat16 widened to float32 exactly).

        Raises:
            TorchPickleError: the view leaves its storage, or the storage record is missing or damaged.
        """
        problem = self.problem()
        if problem is not None:
            raise TorchPickleError(f"{self.archive.path}: tensor on storage {self.storage.key}: {problem}; refused")
        itemsize = _itemsize(self.dtype)
        if 0 in self.shape:
            return np.zeros(self.shape, np.float32 if self.dtype == "bf16" else self.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride, strict=True))
        raw = self.archive.storage_bytes(self.storage.key, (last + 1) * itemsize)
        base = np.frombuffer(raw, dtype="<u2" if self.dtype == "bf16" else self.dtype)
        if self.archive.big_endian:
            base = base.byteswap()
        view = np.lib.stride_tricks.as_strided(
            base[self.offset :], shape=self.shape, strides=tuple(s * itemsize for s in self.stride)
        )
        array = np.array(view)  # own the memory: the zip bytes can go
        return bf16_bits_to_float32(array) if self.dtype == "bf16" else array


def _int_tuple(value: Any) -> tuple[int, ...] | None:
    """`value` as a tuple of at most MAX_DIMS ints, or None (checked before anything iterates it)."""
    if type(value) not in (tuple, list) or len(value) > MAX_DIMS or not all(type(n) is int for n in value):
        return None
    return tuple(value)


class _Allowed:
    """An allow-listed function handed to the pickle: callable, nothing else (no attributes to change)."""

    __slots__ = ("_function", "_label")

    def __init__(self, label: str, function: Any) -> None:
        self._label = label
        self._function = function

    def __call__(self, *args: Any) -> Any:
        return self._function(*args)


def _ordered_dict() -> collections.OrderedDict:
    return collections.OrderedDict()  # built empty: its items come as SETITEMS, whose keys are checked


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


def _is_safe_key(key: Any) -> bool:
    """Whether a dict key or set item hashes in bounded time (no nested tuples, no huge ints)."""
    if type(key) is int:
        return -(2**64) < key < 2**64
    if type(key) in _SCALAR_KEYS:
        return True
    return type(key) is tuple and len(key) <= 8 and all(_is_safe_key(k) and type(k) is not tuple for k in key)


class _Opcodes(dict):
    def __missing__(self, code: int) -> Any:
        raise pickle.UnpicklingError(f"unknown pickle opcode 0x{code:02x}")


class _RestrictedUnpickler(pickle._Unpickler):  # the Python implementation: each opcode can be checked
    dispatch = _Opcodes(pickle._Unpickler.dispatch)

    def __init__(self, stream: Any, archive: TorchArchive) -> None:
        super().__init__(stream)
        self._archive = archive

    def _refuse(self, reason: str) -> TorchPickleError:
        return TorchPickleError(f"{self._archive.path}: refused to load: {reason}")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return _Allowed("OrderedDict", _ordered_dict)
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _Allowed(name, self._rebuild_tensor)
        if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            return _Allowed(name, _rebuild_parameter)
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        raise self._refuse(
            f"its pickle asks for the global {module:.100}.{name:.100}; "
            "a checkpoint may only hold tensors, storages and OrderedDict"
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if not (type(pid) is tuple and len(pid) == 5 and pid[0] == "storage" and type(pid[1]) is _StorageType):
            raise self._refuse(f"unsupported persistent id (a {type(pid).__name__}); expected a torch storage")
        key, numel = pid[2], pid[4]
        if type(key) is not str or not _STORAGE_KEY.fullmatch(key):
            raise self._refuse("a storage key is not a short record name")
        if type(numel) is not int or numel < 0:
            raise self._refuse(f"storage {key} has an invalid element count")
        dtype = pid[1].dtype
        self._archive.check_record(key, numel * _itemsize(dtype))
        return _Storage(dtype, key, numel)

    def _rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> LazyTensor:
        shape, strides = _int_tuple(size), _int_tuple(stride)
        if shape is None or strides is None:
            raise self._refuse(f"a tensor's size and stride must be tuples of at most {MAX_DIMS} ints")
        if type(storage) is not _Storage or type(offset) is not int:
            raise self._refuse("a tensor record is malformed (storage or offset)")
        if len(shape) != len(strides):
            raise self._refuse(f"a tensor has shape {shape} but strides {strides}")
        return LazyTensor(self._archive, storage, offset, shape, strides)

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if type(func) is not _Allowed:
            raise self._refuse(f"its pickle calls a {type(func).__name__}; only allow-listed functions run")
        if type(args) is not tuple or len(args) > MAX_CALL_ARGS:
            raise self._refuse(f"its pickle calls {func._label} with malformed arguments")
        if func._label == "OrderedDict" and args:
            raise self._refuse("OrderedDict may only be built empty (its items come as SETITEMS)")
        self.stack[-1] = func(*args)

    def load_build(self) -> None:
        state = self.stack.pop()
        if type(self.stack[-1]) is not collections.OrderedDict or type(state) is not dict:
            raise self._refuse(f"its pickle sets the state of a {type(self.stack[-1]).__name__} (BUILD)")
        # torch stores the state dict's `_metadata` this way; nothing here needs it, so it is dropped.

    def _refuse_construction(self, *_: Any) -> None:
        raise self._refuse("its pickle constructs an object (INST/OBJ/NEWOBJ); checkpoints never do")

    load_newobj = load_newobj_ex = load_obj = _refuse_construction
    _instantiate = _refuse_construction

    def _checked_keys(self, keys: Any) -> None:
        for key in keys:
            if not _is_safe_key(key):
                raise self._refuse(f"a dict key or set item is a {type(key).__name__}; expected a plain scalar")

    def load_setitem(self) -> None:
        value, key = self.stack.pop(), self.stack.pop()
        self._checked_keys((key,))
        self._target(dict)[key] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        self._checked_keys(items[::2])
        self._target(dict).update(zip(items[::2], items[1::2], strict=False))

    def load_dict(self) -> None:
        items = self.pop_mark()
        self._checked_keys(items[::2])
        self.append(dict(zip(items[::2], items[1::2], strict=False)))

    def load_additems(self) -> None:
        items = self.pop_mark()
        self._checked_keys(items)
        self._target(set).update(items)

    def load_frozenset(self) -> None:
        items = self.pop_mark()
        self._checked_keys(items)
        self.append(frozenset(items))

    def load_append(self) -> None:
        value = self.stack.pop()
        self._target(list).append(value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._target(list).extend(items)

    def _target(self, kind: type) -> Any:
        if not self.stack or not isinstance(self.stack[-1], kind):
            raise self._refuse(f"its pickle adds items to something that is not a {kind.__name__}")
        return self.stack[-1]


for _code, _method in (
    (pickle.REDUCE, "load_reduce"),
    (pickle.BUILD, "load_build"),
    (pickle.NEWOBJ, "load_newobj"),
    (pickle.NEWOBJ_EX, "load_newobj_ex"),
    (pickle.OBJ, "load_obj"),
    (pickle.SETITEM, "load_setitem"),
    (pickle.SETITEMS, "load_setitems"),
    (pickle.DICT, "load_dict"),
    (pickle.ADDITEMS, "load_additems"),
    (pickle.FROZENSET, "load_frozenset"),
    (pickle.APPEND, "load_append"),
    (pickle.APPENDS, "load_appends"),
):
    _RestrictedUnpickler.dispatch[_code[0]] = getattr(_RestrictedUnpickler, _method)


def _unsafe_member_name(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":") or "\x00" in name


class TorchArchive:
    """An opened `torch.save` zip archive and its unpickled object tree."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._zip = self._open_zip()
        try:
            self._load()
        except BaseException:
            self._zip.close()
            raise

    def _open_zip(self) -> zipfile.ZipFile:
        try:
            if not zipfile.is_zipfile(self.path):
                raise TorchPickleError(
                    f"{self.path} is not a torch zip archive (truncated, or the legacy pre-1.6 format: "
                    "re-save it with a recent torch)"
                )
            return zipfile.ZipFile(self.path)
        except TorchPickleError:
            raise
        except Exception as err:  # noqa: BLE001 - zipfile raises many kinds on damaged archives
            raise TorchPickleError(f"{self.path} is a damaged zip archive: {err}") from None

    def _load(self) -> None:
        infos = self._zip.infolist()
        names = [info.filename for info in infos]
        for name in names:
            if _unsafe_member_name(name):
                raise TorchPickleError(f"{self.path}: zip member name {name[:100]!r} leaves the archive; refused")
        if len(set(names)) != len(names):
            twice = next(name for name in names if names.count(name) > 1)
            raise TorchPickleError(f"{self.path}: zip member {twice[:100]!r} appears twice; refused")
        self._infos = {info.filename: info for info in infos}
        pickles = [name for name in names if name.endswith("data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise TorchPickleError(f"{self.path} has no single '<name>/data.pkl' record; not a torch checkpoint")
        self._prefix = pickles[0][: -len("data.pkl")]
        byteorder = f"{self._prefix}byteorder"
        self.big_endian = byteorder in self._infos and self._read(byteorder, 16).strip() == b"big"
        self._check_size(pickles[0], limit=MAX_PICKLE_BYTES)
        self.tree = self._unpickle(pickles[0])

    def _unpickle(self, name: str) -> Any:
        try:
            with self._zip.open(name) as stream:
                return _RestrictedUnpickler(stream, self).load()
        except TorchPickleError:
            raise
        except RecursionError:
            raise TorchPickleError(f"{self.path}: cannot unpickle: its objects nest too deeply") from None
        except Exception as err:  # noqa: BLE001 - any failure of a hostile stream is a refusal, named
            raise TorchPickleError(f"{self.path}: cannot unpickle: {type(err).__name__}: {str(err)[:200]}") from None

    def _check_size(self, name: str, limit: int | None = None) -> zipfile.ZipInfo:
        """The record's entry, after refusing records over `limit` bytes or compressed too well (a bomb)."""
        info = self._infos.get(name)
        if info is None:
            raise TorchPickleError(f"{self.path}: record {name!r} is missing")
        if limit is not None and info.file_size > limit:
            raise TorchPickleError(f"{self.path}: record {name!r} declares {info.file_size} bytes; refused")
        compressed = info.compress_type != zipfile.ZIP_STORED
        if compressed and info.file_size > BOMB_FLOOR_BYTES and info.file_size > BOMB_RATIO * info.compress_size:
            raise TorchPickleError(
                f"{self.path}: record {name!r} inflates {info.compress_size} bytes to {info.file_size}; "
                "refused (a compression bomb)"
            )
        return info

    def check_record(self, key: str, nbytes: int) -> None:
        """Refuse a storage whose record is missing, shorter than `nbytes`, or a compression bomb."""
        info = self._check_size(f"{self._prefix}data/{key}")
        if info.file_size < nbytes:
            raise TorchPickleError(
                f"{self.path}: storage {key} declares {nbytes} bytes but its record holds {info.file_size}; refused"
            )

    def _read(self, name: str, nbytes: int) -> bytes:
        """At most `nbytes` of a record: never more is inflated."""
        try:
            with self._zip.open(name) as stream:
                return stream.read(nbytes)
        except Exception as err:  # noqa: BLE001 - zipfile raises many kinds on damaged data
            raise TorchPickleError(f"{self.path}: record {name!r} is damaged: {type(err).__name__}: {err}") from None

    def storage_bytes(self, key: str, nbytes: int) -> bytes:
        """The first `nbytes` bytes of storage `key` (`TorchPickleError` when the record has fewer)."""
        name = f"{self._prefix}data/{key}"
        self._check_size(name)
        data = self._read(name, nbytes)
        if len(data) < nbytes:
            raise TorchPickleError(f"{self.path}: storage {key} is truncated ({len(data)} of {nbytes} bytes)")
        return data

    def close(self) -> None:
        self._zip.close()


def find_state_dict(tree: Any, path: Path, key: str | None = None) -> dict[str, LazyTensor]:
    """The flat name -> tensor mapping of a checkpoint (`{"model": ...}` wrappers unwrapped).

    Raises:
        TorchPickleError: no state dict, no tensors, or a tensor that does not fit its storage.
    """
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
    for name, tensor in tensors.items():
        problem = tensor.problem()
        if problem is not None:
            raise TorchPickleError(f"{path}: tensor {str(name)[:200]!r}: {problem}; refused")
    return tensors


class TorchPickleFile:
    """A `pytorch_model.bin` as a tensor source: `keys()`, `shape(name)`, `get(name)`."""

    def __init__(self, path: str | os.PathLike, key: str | None = None) -> None:
        self.path = Path(path)
        self._archive = TorchArchive(self.path)
        try:
            self._tensors = find_state_dict(self._archive.tree, self.path, key)
        except BaseException:
            self._archive.close()
            raise

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
