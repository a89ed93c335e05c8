"""Builders of hostile checkpoint files, made at test time (no binary blobs in the repository).

`.bin`: hand-written pickle opcodes (protocol 2, as `torch.save` writes) inside a zip laid out like
`torch.save`'s; safetensors: a raw header and data; `.h5`: h5py edits of a valid file.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PREFIX = "archive/"


def unicode(text: str) -> bytes:
    """BINUNICODE: a pickled str."""
    data = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def integer(value: int) -> bytes:
    """A pickled int (BININT1/BININT/LONG1, whatever pickle picks)."""
    return pickle.dumps(value, protocol=2)[2:-1]


def int_tuple(values: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(integer(v) for v in values) + b"t"


def global_(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


@dataclass
class Tensor:
    """One `_rebuild_tensor_v2` record of a crafted state dict."""

    name: str
    key: str
    numel: int
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    storage: str = "FloatStorage"


def tensor_record(tensor: Tensor) -> bytes:
    """The opcodes that push the rebuilt tensor (torch's own sequence, protocol 2)."""
    pid = b"(" + unicode("storage") + global_("torch", tensor.storage) + unicode(tensor.key) + unicode("cpu")
    pid += integer(tensor.numel) + b"t"
    args = b"(" + pid + b"Q" + integer(tensor.offset) + int_tuple(tensor.shape) + int_tuple(tensor.stride)
    args += b"\x89" + global_("collections", "OrderedDict") + b")R" + b"t"
    return global_("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def state_dict_pickle(tensors: list[Tensor], extra: dict[str, bytes] | None = None) -> bytes:
    """An OrderedDict name -> tensor; `extra` adds entries whose values are raw opcodes."""
    body = b"".join(unicode(t.name) + tensor_record(t) for t in tensors)
    body += b"".join(unicode(name) + ops for name, ops in (extra or {}).items())
    return b"\x80\x02" + global_("collections", "OrderedDict") + b")R(" + body + b"u."


def write_torch_zip(
    path: Path,
    data_pkl: bytes,
    records: dict[str, bytes] | None = None,
    extra_members: list[tuple[str, bytes]] | None = None,
) -> Path:
    """A zip laid out like `torch.save`'s: `archive/data.pkl`, `archive/data/<key>`, `archive/version`."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(PREFIX + "data.pkl", data_pkl)
        archive.writestr(PREFIX + "byteorder", "little")
        for key, data in (records or {}).items():
            archive.writestr(PREFIX + f"data/{key}", data)
        for name, data in extra_members or []:
            archive.writestr(name, data)
        archive.writestr(PREFIX + "version", "3\n")
    return path


def float_storage(count: int, start: float = 0.0) -> bytes:
    return (np.arange(count, dtype="<f4") + start).tobytes()


def valid_bin(path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A small valid `.bin` (two tensors, one a transposed view of a shared storage) and its values."""
    base = np.arange(12, dtype=np.float32)
    tensors = [
        Tensor("a.weight", "0", 12, 0, (3, 4), (4, 1)),
        Tensor("a.weight_t", "0", 12, 0, (4, 3), (1, 4)),
        Tensor("b.bias", "1", 5, 1, (4,), (1,)),
    ]
    write_torch_zip(path, state_dict_pickle(tensors), {"0": base.tobytes(), "1": float_storage(5, 100.0)})
    expected = {
        "a.weight": base.reshape(3, 4),
        "a.weight_t": base.reshape(3, 4).T,
        "b.bias": np.arange(1, 5, dtype=np.float32) + 100.0,
    }
    return path, expected


def write_raw_safetensors(path: Path, header: dict | bytes, data: bytes = b"", length: int | None = None) -> Path:
    """A safetensors file with this header (a dict is dumped as JSON) and data; `length` overrides the prefix."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return path
