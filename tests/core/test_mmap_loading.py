"""`SafetensorsFile.map_tensor`: copy-on-write views of the file that a framework keeps as parameters.

The views must hold the file's values, never write back to the file, survive an atomic replacement of
the file, refuse layouts they cannot view, and come only after the header checks of every read.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from blip_core.checkpoints.safetensors_io import (
    SafetensorsError,
    SafetensorsFile,
    float32_to_bf16_bits,
    write_safetensors,
)
from blip_core.checkpoints.sources import ShardedSource, TFNamedSource, map_tensor


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.RandomState(3)
    return {  # widest first: every offset a multiple of its item size
        "c.weight": rng.randn(4, 4).astype(np.float64),
        "a.weight": rng.randn(6, 5).astype(np.float32),
        "b.bias": rng.randn(7).astype(np.float16),
    }


def _raw_file(path, header: dict, data: bytes, pad: int = 0) -> None:
    """A safetensors file written byte by byte (`pad` spaces after the JSON: any header length)."""
    text = json.dumps(header).encode() + b" " * pad
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def test_views_hold_the_file_values_in_its_dtype(tmp_path):
    tensors = _tensors()
    bits = float32_to_bf16_bits(np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4))
    write_safetensors(tmp_path / "m.safetensors", {**tensors, "h": bits}, bf16_names=frozenset({"h"}))
    source = SafetensorsFile(tmp_path / "m.safetensors")
    for name, value in tensors.items():
        dtype_name, view = source.map_tensor(name)
        assert dtype_name == {np.float32: "F32", np.float16: "F16", np.float64: "F64"}[value.dtype.type]
        assert view.dtype == value.dtype and view.shape == value.shape and np.array_equal(view, value), name
        assert view.flags.writeable
    dtype_name, view = source.map_tensor("h")
    assert dtype_name == "BF16" and view.dtype == np.uint16 and np.array_equal(view, bits)
    first = source.map_tensor("a.weight")[1]
    source.close()
    assert np.array_equal(first, tensors["a.weight"])  # views outlive close()


def test_writes_to_a_view_never_reach_the_file(tmp_path):
    tensors = _tensors()
    path = write_safetensors(tmp_path / "m.safetensors", tensors)
    before = path.read_bytes()
    source = SafetensorsFile(path)
    view = source.map_tensor("a.weight")[1]
    view[:] = 7.0
    assert np.all(view == 7.0)
    source.lend("b.bias")
    source.lend("c.weight")  # lending (and releasing) other tensors' pages leaves the written view alone
    source.close()
    assert np.all(view == 7.0)
    assert path.read_bytes() == before
    assert np.array_equal(SafetensorsFile(path).map_tensor("a.weight")[1], tensors["a.weight"])


def test_views_survive_an_atomic_replacement_of_the_file(tmp_path):
    tensors = _tensors()
    path = write_safetensors(tmp_path / "m.safetensors", tensors)
    view = SafetensorsFile(path).map_tensor("a.weight")[1]
    write_safetensors(path, {"a.weight": np.zeros((6, 5), np.float32)})  # temporary file, then os.replace
    assert np.array_equal(view, tensors["a.weight"])
    assert np.array_equal(SafetensorsFile(path).get("a.weight"), np.zeros((6, 5), np.float32))


def test_misaligned_and_empty_tensors_are_read_not_mapped(tmp_path):
    values = np.arange(6, dtype=np.float32)
    header = {
        "x": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24]},
        "e": {"dtype": "F32", "shape": [0], "data_offsets": [24, 24]},
        "y": {"dtype": "F32", "shape": [2], "data_offsets": [26, 34]},
    }
    data = values.tobytes() + b"\0\0" + np.array([1.5, -2.0], np.float32).tobytes()
    _raw_file(tmp_path / "odd.safetensors", header, data, pad=-(len(json.dumps(header)) + 8) % 4)
    source = SafetensorsFile(tmp_path / "odd.safetensors")
    assert source.map_tensor("x") is not None and np.array_equal(source.map_tensor("x")[1], values)
    assert source.map_tensor("e") is None  # nothing to map
    assert source.map_tensor("y") is None  # starts 2 bytes off a 4-byte boundary
    assert np.array_equal(source.get("y"), [1.5, -2.0])


@pytest.mark.parametrize(
    "header,data,message",
    [
        ({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, "truncated"),
        ({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 16, "shape needs 16"),
        (
            {
                "x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\0" * 12,
            "overlap",
        ),
    ],
)
def test_hostile_headers_are_refused_before_any_mapping(tmp_path, header, data, message):
    _raw_file(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(SafetensorsError, match=message):
        SafetensorsFile(tmp_path / "bad.safetensors")


def test_a_file_that_shrank_after_opening_is_refused(tmp_path):
    path = write_safetensors(tmp_path / "m.safetensors", _tensors())
    source = SafetensorsFile(path)
    with open(path, "r+b") as stream:
        stream.truncate(path.stat().st_size - 8)
    with pytest.raises(SafetensorsError, match="shrank"):
        source.map_tensor("a.weight")


def test_sources_that_rename_or_transpose_do_not_map(tmp_path):
    tensors = _tensors()
    first = write_safetensors(tmp_path / "a.safetensors", {"a.weight": tensors["a.weight"]})
    second = write_safetensors(tmp_path / "b.safetensors", {"b.bias": tensors["b.bias"]})
    sharded = ShardedSource([SafetensorsFile(first), SafetensorsFile(second)])
    assert np.array_equal(map_tensor(sharded, "b.bias")[1], tensors["b.bias"])
    tf_path = write_safetensors(
        tmp_path / "tf.safetensors", {"blip/dense/kernel:0": tensors["a.weight"]}, metadata={"format": "tf"}
    )
    renamed = TFNamedSource(SafetensorsFile(tf_path))
    assert map_tensor(renamed, renamed.keys()[0]) is None  # Keras layout: read and transposed instead
