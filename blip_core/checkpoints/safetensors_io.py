"""Read and write `.safetensors` files as NumPy, bfloat16 included, tensor by tensor.

NumPy has no bfloat16: such tensors are read as float32 (exactly) and written
from uint16 bit patterns. Reading is lazy so that a loader never holds a
second copy of all weights.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.io.atomic import atomic_open

DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES_BY_DTYPE = {dtype: name for name, dtype in DTYPES.items() if name not in ("BF16",)}
_MAX_HEADER = 100 * 2**20
_MAX_DIMS = 64


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object hook that refuses a key given twice (json.loads would keep the last silently)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateKey(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return result


def _int_list(value: Any) -> bool:
    """Whether a JSON value is a list of integers (booleans and floats excluded)."""
    return isinstance(value, list) and all(type(n) is int for n in value)


class SafetensorsError(ValueError):
    """A malformed or truncated safetensors file; names the file and the tensor."""


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def float32_to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (exact for bf16 values)."""
    bits = np.asarray(values, dtype=np.float32, order="C").view(np.uint32)  # keeps 0-d arrays 0-d
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    out = (rounded >> 16).astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        out[nan] = 0x7FC0
    return out


ALIGNMENT = 64  # bytes: Eigen's (and so TensorFlow's) largest vector alignment


def aligned_empty(nbytes: int) -> np.ndarray:
    """An uninitialised uint8 array of `nbytes` whose data starts on an `ALIGNMENT` boundary."""
    buffer = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    skip = -buffer.ctypes.data % ALIGNMENT
    return buffer[skip : skip + nbytes]


class SafetensorsFile:
    """A lazily read safetensors file: `keys()`, `shape(name)`, `dtype(name)`, `get(name)`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._map: mmap.mmap | None = None
        self._kept: mmap.mmap | None = None  # the mapping `map_tensor` views live in (never madvised)
        self._lent: tuple[int, int] | None = None  # byte range of the last lent tensor
        header, length = self._read_header()
        self.metadata: dict[str, str] = self._check_metadata(header.pop("__metadata__", None))
        self._start = 8 + length
        self._entries = {name: self._check_entry(name, entry) for name, entry in header.items()}
        self._check_overlaps()

    def _read_header(self) -> tuple[dict, int]:
        """The parsed JSON header and its length; `SafetensorsError` for anything but a JSON object."""
        try:
            self._size = self.path.stat().st_size
            with open(self.path, "rb") as stream:
                head = stream.read(8)
                if len(head) < 8:
                    raise SafetensorsError(f"{self.path} is not a safetensors file: it has {len(head)} bytes")
                (length,) = struct.unpack("<Q", head)
                if length > min(_MAX_HEADER, self._size - 8):
                    raise SafetensorsError(
                        f"{self.path} is truncated or not a safetensors file (header of {length} bytes, "
                        f"file of {self._size})"
                    )
                text = stream.read(length).decode("utf-8")
            header = json.loads(text, object_pairs_hook=_no_duplicates)
        except SafetensorsError:
            raise
        except OSError as err:
            raise SafetensorsError(f"cannot read {self.path}: {err.strerror or err}") from None
        except _DuplicateKey as err:
            raise SafetensorsError(f"{self.path}: header names {err.args[0][:200]!r} twice; refused") from None
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            reason = "not UTF-8" if isinstance(err, UnicodeDecodeError) else "not valid JSON"
            raise SafetensorsError(f"{self.path} is not a safetensors file (its header is {reason})") from None
        if not isinstance(header, dict):
            raise SafetensorsError(f"{self.path}: header is not a JSON object")
        return header, length

    def _check_metadata(self, metadata: Any) -> dict[str, str]:
        if metadata is None:
            return {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise SafetensorsError(f"{self.path}: header field __metadata__ must map strings to strings")
        return metadata

    def _check_entry(self, name: str, entry: Any) -> tuple[str, tuple[int, ...], int, int]:
        """(dtype, shape, begin, end) of a header entry, each field of the right JSON type and in range."""
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(
                f"{self.path}: header entry for tensor {name!r} must be an object with exactly "
                "dtype, shape and data_offsets"
            )
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise SafetensorsError(f"{self.path}: tensor {name!r} has unsupported dtype {str(dtype)[:40]}")
        if not _int_list(shape) or any(n < 0 for n in shape) or len(shape) > _MAX_DIMS:
            raise SafetensorsError(
                f"{self.path}: tensor {name!r}: shape must be a list of at most {_MAX_DIMS} non-negative integers"
            )
        if not _int_list(offsets) or len(offsets) != 2 or not 0 <= offsets[0] <= offsets[1]:
            raise SafetensorsError(
                f"{self.path}: tensor {name!r}: data_offsets must be [begin, end], 0 <= begin <= end"
            )
        begin, end = offsets
        expected = math.prod(shape) * DTYPES[dtype].itemsize
        if end - begin != expected:
            raise SafetensorsError(f"{self.path}: tensor {name!r} has {end - begin} bytes, its shape needs {expected}")
        if self._start + end > self._size:
            raise SafetensorsError(
                f"{self.path} is truncated: tensor {name!r} ends at byte {self._start + end}, the file has {self._size}"
            )
        return dtype, tuple(shape), begin, end

    def _check_overlaps(self) -> None:
        """Refuse two tensors sharing bytes (a writer never does that; a reader would alias them)."""
        spans = sorted((begin, end, name) for name, (_, _, begin, end) in self._entries.items() if end > begin)
        for (_, end, first), (begin, _, second) in zip(spans, spans[1:], strict=False):
            if begin < end:
                raise SafetensorsError(f"{self.path}: tensors {first!r} and {second!r} overlap; refused")

    def keys(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name][1]

    def dtype(self, name: str) -> str:
        return self._entries[name][0]

    def get(self, name: str) -> np.ndarray:
        """The tensor as a fresh, 64-byte-aligned NumPy array (bfloat16 widened to float32).

        Aligned so that a framework may adopt the memory without a copy (TensorFlow requires it).
        """
        dtype, shape, begin, end = self._entries[name]
        array = aligned_empty(end - begin)
        with open(self.path, "rb") as stream:
            stream.seek(self._start + begin)
            filled = stream.readinto(memoryview(array))
        if filled != end - begin:
            raise SafetensorsError(f"{self.path} is truncated inside tensor {name!r}")
        array = array.view(DTYPES[dtype]).reshape(shape)
        return bf16_bits_to_float32(array) if dtype == "BF16" else array

    def lend(self, name: str) -> np.ndarray:
        """The tensor as a copy-on-write view of the file's pages, for a reader that copies it anyway.

        No read into a private buffer: a consumer that transposes the tensor into its own memory
        (the Keras loader) copies each byte once. Writes to the view never reach the file; the view
        stays valid after `close()`. bfloat16 tensors are widened, hence read.
        """
        dtype, shape, begin, end = self._entries[name]
        if dtype == "BF16" or end == begin:
            return self.get(name)
        if self._map is None:
            self._map = self._private_map()
            if self._map is None:  # a file system without mmap: read instead
                return self.get(name)
        self._release_lent()
        self._lent = (self._start + begin, self._start + end)
        count = (end - begin) // DTYPES[dtype].itemsize
        return np.frombuffer(self._map, dtype=DTYPES[dtype], count=count, offset=self._start + begin).reshape(shape)

    def map_tensor(self, name: str) -> tuple[str, np.ndarray] | None:
        """(file dtype name, the tensor's bytes as a copy-on-write view of the file), for a caller that keeps it.

        The view is of a private mapping (`MAP_PRIVATE`): writes to it stay in this process and never reach the
        file, and replacing the file (an atomic `save_pretrained`) leaves it intact. Its pages are read from
        the file only when first touched. BF16 comes as its uint16 bit patterns. None where the layout does
        not allow a view (big-endian host, an offset not a multiple of the item size, an empty tensor) or the
        file system cannot map: the caller reads the tensor instead. The header was validated when the file
        was opened (offsets, sizes, overlaps), exactly as for `get`.

        Raises:
            SafetensorsError: the file shrank since it was opened.
        """
        dtype, shape, begin, end = self._entries[name]
        item = DTYPES[dtype].itemsize
        if sys.byteorder != "little" or end == begin or (self._start + begin) % item:
            return None
        if self._kept is None:
            self._kept = self._private_map()
            if self._kept is None:
                return None
        count = (end - begin) // item
        view = np.frombuffer(self._kept, dtype=DTYPES[dtype], count=count, offset=self._start + begin)
        return dtype, view.reshape(shape)

    def _private_map(self) -> mmap.mmap | None:
        """A copy-on-write mapping of the whole file; None where the file system cannot map."""
        try:
            with open(self.path, "rb") as stream:
                mapping = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_COPY)
        except (OSError, ValueError):
            return None
        if len(mapping) < self._size:
            raise SafetensorsError(f"{self.path} shrank while being read")
        return mapping

    def _release_lent(self) -> None:
        """Return the previously lent tensor's pages: the consumer has copied it, and a later read of
        those (unmodified, private) pages would simply fetch them from the file again."""
        if self._map is None or self._lent is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        first = self._lent[0] - self._lent[0] % mmap.PAGESIZE
        self._map.madvise(mmap.MADV_DONTNEED, first, self._lent[1] - first)
        self._lent = None

    def close(self) -> None:
        """Drop the mappings of `lend` and `map_tensor` (views already given keep them alive until they go)."""
        self._release_lent()
        self._map = None
        self._kept = None


def write_safetensors(
    path: str | os.PathLike,
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, str] | None = None,
    bf16_names: frozenset[str] = frozenset(),
) -> Path:
    """Write tensors atomically; names in `bf16_names` hold uint16 bfloat16 bit patterns."""
    entries, offset = {}, 0
    arrays = {}
    for name, value in tensors.items():
        array = np.asarray(value)
        if name in bf16_names:
            if array.dtype != np.uint16:
                raise TypeError(f"tensor {name!r}: bfloat16 data must come as uint16 bit patterns, got {array.dtype}")
            dtype_name = "BF16"
        else:
            dtype_name = _NAMES_BY_DTYPE.get(
                array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
            )
            if dtype_name is None:
                raise TypeError(f"tensor {name!r} has dtype {array.dtype}, which safetensors cannot store")
        arrays[name] = array
        entries[name] = {
            "dtype": dtype_name,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    header = {"__metadata__": dict(metadata or {"format": "pt"}), **entries}
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    path = Path(path)
    with atomic_open(path) as stream:
        stream.write(struct.pack("<Q", len(header_bytes)))
        stream.write(header_bytes)
        for array in arrays.values():
            little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).reshape(-1)
            stream.write(memoryview(little.view(np.uint8)))
    return path
