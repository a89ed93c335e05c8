"""Property-based fuzzing of each checkpoint reader on mutated valid files (bit flips, truncation at any
byte, header and pickle edits). The property: every tensor is read, or the reader raises its documented
exception (a ValueError subclass) naming the file; never another exception type or a hang.

Modest example counts by default; `--run-slow` runs thousands per target.
"""

from __future__ import annotations

import json
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

from blip_core.checkpoints.h5_reader import H5ReadError
from blip_core.checkpoints.safetensors_io import SafetensorsError, write_safetensors
from blip_core.checkpoints.sources import open_file
from blip_core.checkpoints.torch_pickle import TorchPickleError
from tests.helpers.h5_files import write_keras3, write_tf_h5
from tests.security.fuzzing import run_examples
from tests.security.hostile_files import PREFIX, valid_bin

DEFAULT_EXAMPLES = 60
SLOW_EXAMPLES = 3000


@pytest.fixture
def examples(request) -> int:
    return SLOW_EXAMPLES if request.config.getoption("--run-slow") else DEFAULT_EXAMPLES


def _run(examples: int, strategy, check) -> None:
    run_examples(examples, strategy, check, derandomize=examples <= DEFAULT_EXAMPLES)


def _read_everything(path: Path, documented: type[Exception]) -> None:
    """Open `path` and read every tensor; the only exception allowed is `documented` naming the file."""
    try:
        source = open_file(path)
        try:
            for name in source.keys():
                array = source.get(name)
                assert isinstance(array, np.ndarray)
        finally:
            source.close()
    except documented as err:
        assert str(path) in str(err) or str(path.parent) in str(err), str(err)


def _mutations(size: int):
    """(bit flips, cut) for a file of `size` bytes."""
    flips = st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 7)), max_size=6)
    return st.tuples(flips, st.one_of(st.none(), st.integers(0, size)))


def _mutate(data: bytes, mutation) -> bytes:
    flips, cut = mutation
    buffer = bytearray(data)
    for position, bit in flips:
        buffer[position] ^= 1 << bit
    return bytes(buffer if cut is None else buffer[:cut])


def _valid_safetensors(folder: Path) -> bytes:
    rng = np.random.RandomState(0)
    tensors = {
        "vision_model.post_layernorm.weight": rng.randn(8).astype(np.float32),
        "text.ids": np.arange(6, dtype=np.int64).reshape(2, 3),
        "half": rng.randn(2, 3).astype(np.float16),
        "empty": np.zeros((0, 4), np.float32),
    }
    return write_safetensors(folder / "valid.safetensors", tensors).read_bytes()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)


def test_fuzz_safetensors_bytes(examples, tmp_path):
    valid = _valid_safetensors(tmp_path)
    path = tmp_path / "model.safetensors"

    def check(mutation):
        path.write_bytes(_mutate(valid, mutation))
        _read_everything(path, SafetensorsError)

    _run(examples, _mutations(len(valid)), check)


def test_fuzz_safetensors_header_edits(examples, tmp_path):
    valid = _valid_safetensors(tmp_path)
    (length,) = struct.unpack("<Q", valid[:8])
    header, data = json.loads(valid[8 : 8 + length]), valid[8 + length :]
    path = tmp_path / "model.safetensors"
    names = sorted(header)
    fields = ["dtype", "shape", "data_offsets", None]
    edits = st.lists(st.tuples(st.sampled_from(names), st.sampled_from(fields), _JSON), min_size=1, max_size=3)

    def check(changes):
        edited = json.loads(json.dumps(header))
        for name, field, value in changes:
            if field is None or not isinstance(edited.get(name), dict):
                edited[name] = value
            else:
                edited[name][field] = value
        text = json.dumps(edited).encode()
        path.write_bytes(struct.pack("<Q", len(text)) + text + data)
        _read_everything(path, SafetensorsError)

    _run(examples, edits, check)


def test_fuzz_bin_archive_bytes(examples, tmp_path):
    source, _ = valid_bin(tmp_path / "valid.bin")
    valid = source.read_bytes()
    path = tmp_path / "pytorch_model.bin"

    def check(mutation):
        path.write_bytes(_mutate(valid, mutation))
        _read_everything(path, TorchPickleError)

    _run(examples, _mutations(len(valid)), check)


def test_fuzz_bin_pickle_edits(examples, tmp_path):
    """Mutations inside `data.pkl` and the storages, re-zipped so the zip's CRCs do not catch them."""
    source, _ = valid_bin(tmp_path / "valid.bin")
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    pickled = members[PREFIX + "data.pkl"]
    path = tmp_path / "pytorch_model.bin"
    insert = st.tuples(st.integers(0, len(pickled)), st.binary(max_size=12))

    def check(example):
        mutation, inserts = example
        data = _mutate(pickled, mutation)
        for position, extra in inserts:
            data = data[:position] + extra + data[position:]
        with zipfile.ZipFile(path, "w") as archive:
            for name, content in members.items():
                archive.writestr(name, data if name == PREFIX + "data.pkl" else content)
        _read_everything(path, TorchPickleError)

    _run(examples, st.tuples(_mutations(len(pickled)), st.lists(insert, max_size=3)), check)


def _valid_tf_h5(folder: Path) -> bytes:
    rng = np.random.RandomState(0)
    write_tf_h5(
        folder / "valid.h5",
        "tf_blip_vision_model",
        {"post_layernorm": {"post_layernorm/gamma:0": rng.randn(8).astype(np.float32)}},
    )
    return (folder / "valid.h5").read_bytes()


def _valid_keras3(folder: Path) -> bytes:
    layers = {"": ("tf_blip_vision_model", []), "post_layernorm": ("post_layernorm", [np.ones(8, np.float32)])}
    write_keras3(folder / "valid.weights.h5", layers)
    return (folder / "valid.weights.h5").read_bytes()


@pytest.mark.parametrize("layout", ["tf_port", "keras3"])
def test_fuzz_h5_bytes(layout, examples, tmp_path):
    pytest.importorskip("h5py")
    valid = _valid_tf_h5(tmp_path) if layout == "tf_port" else _valid_keras3(tmp_path)
    path = tmp_path / ("tf_model.h5" if layout == "tf_port" else "model.weights.h5")

    def check(mutation):
        path.write_bytes(_mutate(valid, mutation))
        _read_everything(path, H5ReadError)

    _run(examples, _mutations(len(valid)), check)


def test_mutation_helper_really_mutates():
    with tempfile.TemporaryDirectory() as folder:
        valid = _valid_safetensors(Path(folder))
    assert _mutate(valid, ([(0, 0)], None))[0] == valid[0] ^ 1
    assert _mutate(valid, ([], 5)) == valid[:5]
