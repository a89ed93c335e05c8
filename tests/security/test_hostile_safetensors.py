"""Crafted hostile safetensors headers: each refused with `SafetensorsError` (a ValueError) naming the file,
the tensor where there is one, and the reason; never TypeError/AttributeError/OverflowError/RecursionError."""

from __future__ import annotations

import numpy as np
import pytest

from blip_conversion.cli import main
from blip_core.checkpoints.safetensors_io import SafetensorsError, SafetensorsFile
from blip_core.checkpoints.sources import open_file
from tests.security.hostile_files import write_raw_safetensors


def _entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape) if isinstance(shape, tuple) else shape, "data_offsets": offsets}


DATA = np.arange(4, dtype="<f4").tobytes()  # 16 bytes

HEADERS = {
    "dtype not a string": ({"w": _entry(dtype=5)}, "tensor 'w' has unsupported dtype 5"),
    "dtype a list": ({"w": _entry(dtype=["F32"])}, "tensor 'w' has unsupported dtype"),
    "unknown dtype": ({"w": _entry(dtype="F8_E4M3")}, "tensor 'w' has unsupported dtype F8_E4M3"),
    "shape a string": ({"w": _entry(shape="12")}, "tensor 'w': shape must be a list"),
    "shape of floats": ({"w": _entry(shape=[2.0])}, "tensor 'w': shape must be a list"),
    "shape of booleans": ({"w": _entry(shape=[True, True])}, "tensor 'w': shape must be a list"),
    "shape of infinities": (b'{"w": {"dtype": "F32", "shape": [1e999], "data_offsets": [0, 8]}}', "shape must be"),
    "negative shape": ({"w": _entry(shape=[-1, -2])}, "tensor 'w': shape must be a list of at most 64 non-negative"),
    "offsets an object": ({"w": _entry(offsets={"a": 0, "b": 8})}, "tensor 'w': data_offsets must be [begin, end]"),
    "one offset": ({"w": _entry(offsets=[8])}, "tensor 'w': data_offsets must be [begin, end]"),
    "negative offset": ({"w": _entry(offsets=[-8, 0])}, "tensor 'w': data_offsets must be [begin, end]"),
    "end before begin": ({"w": _entry(offsets=[8, 0])}, "tensor 'w': data_offsets must be [begin, end]"),
    "offset past the file": ({"w": _entry(offsets=[8, 16]), "v": _entry(offsets=[16, 24])}, "is truncated: tensor 'v'"),
    "offsets past int64": ({"w": _entry(offsets=[2**70, 2**70 + 8])}, "is truncated: tensor 'w' ends at byte"),
    "10^12 elements": ({"w": _entry(shape=[10**6, 10**6])}, "tensor 'w' has 8 bytes, its shape needs 4000000000000"),
    "10^12 elements, offsets agreeing": (
        {"w": _entry(shape=[10**6, 10**6], offsets=[0, 4 * 10**12])},
        "is truncated: tensor 'w' ends at byte",
    ),
    "overlapping tensors": ({"w": _entry(offsets=[0, 8]), "v": _entry(offsets=[4, 12])}, "'w' and 'v' overlap"),
    "entry not an object": ({"w": [1, 2, 3]}, "header entry for tensor 'w' must be an object"),
    "entry with extra fields": ({"w": {**_entry(), "extra": 1}}, "header entry for tensor 'w' must be an object"),
    "metadata not an object": ({"__metadata__": ["pt"], "w": _entry()}, "__metadata__ must map strings to strings"),
    "metadata values not strings": ({"__metadata__": {"format": 1}}, "__metadata__ must map strings to strings"),
    "header not an object": ([1, 2], "header is not a JSON object"),
    "duplicate keys": (b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "w": {}}', "names 'w' twice"),
    "non-UTF-8 header": (b'{"w\xff": {}}', "its header is not UTF-8"),
    "UTF-16 header": ('{"w": {}}'.encode("utf-16"), "its header is not UTF-8"),
    "deeply nested JSON": (b"[" * 100_000 + b"]" * 100_000, "its header is not valid JSON"),
    "huge integer": (b'{"w": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 8]}}', "not valid"),
}


@pytest.mark.parametrize("kind", sorted(HEADERS))
def test_hostile_headers_are_refused(kind, tmp_path):
    header, reason = HEADERS[kind]
    path = write_raw_safetensors(tmp_path / "model.safetensors", header, DATA)
    with pytest.raises(SafetensorsError) as info:
        open_file(path)
    assert str(path) in str(info.value) and reason in str(info.value), str(info.value)


def test_header_longer_than_the_file(tmp_path):
    path = write_raw_safetensors(tmp_path / "model.safetensors", {"w": _entry()}, DATA, length=10**6)
    with pytest.raises(SafetensorsError, match="truncated or not a safetensors file \\(header of 1000000 bytes"):
        SafetensorsFile(path)
    path = write_raw_safetensors(tmp_path / "model.safetensors", {"w": _entry()}, DATA, length=2**64 - 1)
    with pytest.raises(SafetensorsError, match="truncated or not a safetensors file"):
        SafetensorsFile(path)


def test_a_valid_crafted_file_reads_exactly(tmp_path):
    """The same builder, with a consistent header: read exactly (the refusals above are about the fields)."""
    header = {
        "__metadata__": {"format": "pt"},
        "w": _entry(shape=[2, 2], offsets=[0, 16]),
        "e": _entry("F32", (0,), [0, 0]),
    }
    header["z"] = _entry(shape=[0, 10**12], offsets=[16, 16])
    source = SafetensorsFile(write_raw_safetensors(tmp_path / "ok.safetensors", header, DATA))
    assert np.array_equal(source.get("w"), np.arange(4, dtype=np.float32).reshape(2, 2))
    assert source.get("z").shape == (0, 10**12)


def test_blip_convert_reports_hostile_headers_in_one_line(capsys, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "blip"}')
    write_raw_safetensors(folder / "model.safetensors", {"w": _entry(offsets={"a": 0})}, DATA)
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(["to-safetensors", str(folder), str(tmp_path / "out"), "--class", "BlipVisionModel"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1, err
    assert "model.safetensors: tensor 'w': data_offsets must be [begin, end]" in err[0]
    assert not (tmp_path / "out").exists()
