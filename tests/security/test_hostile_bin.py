"""Crafted hostile `.bin` archives: each refused with `TorchPickleError` naming the file and the reason,
nothing executed, nothing read outside the archive's own storages, no memory for a size merely claimed."""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest

from blip_core.checkpoints.sources import open_file
from blip_core.checkpoints.torch_pickle import TorchPickleError, TorchPickleFile
from tests.security.hostile_files import (
    PREFIX,
    Tensor,
    float_storage,
    global_,
    state_dict_pickle,
    tensor_record,
    unicode,
    valid_bin,
    write_torch_zip,
)


def _refused(path, *fragments):
    with pytest.raises(TorchPickleError) as info:
        source = open_file(path)
        for name in source.keys():
            source.get(name)
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_the_crafted_valid_archive_loads_exactly(tmp_path):
    path, expected = valid_bin(tmp_path / "ok.bin")
    source = TorchPickleFile(path)
    assert source.keys() == list(expected)
    for name, value in expected.items():
        assert np.array_equal(source.get(name), value), name


VIEWS = {
    "negative offset": (Tensor("w", "0", 12, -4, (4,), (1,)), "negative storage offset -4"),
    "negative stride": (Tensor("w", "0", 12, 11, (4,), (-1,)), "negative stride in (-1,)"),
    "zero stride": (Tensor("w", "0", 12, 0, (1000, 12), (0, 1)), "stride 0 in (0, 1) makes elements overlap"),
    "overlapping strides": (Tensor("w", "0", 12, 0, (6, 4), (2, 1)), "stride 2 in (2, 1) makes elements overlap"),
    "past the end": (Tensor("w", "0", 12, 2, (3, 4), (4, 1)), "elements 2..13 lie outside its storage of 12"),
    "huge stride": (Tensor("w", "0", 12, 0, (2,), (2**62,)), "outside its storage of 12 elements"),
    "storage larger than record": (Tensor("w", "0", 10**9, 0, (10**9,), (1,)), "storage 0 declares 4000000000"),
    "missing record": (Tensor("w", "7", 12, 0, (12,), (1,)), "record 'archive/data/7' is missing"),
    "storage key escapes": (Tensor("w", "../../etc/passwd", 12, 0, (12,), (1,)), "not a short record name"),
}


@pytest.mark.parametrize("kind", sorted(VIEWS))
def test_views_outside_their_storage_are_refused(kind, tmp_path):
    tensor, reason = VIEWS[kind]
    path = write_torch_zip(tmp_path / "pytorch_model.bin", state_dict_pickle([tensor]), {"0": float_storage(12)})
    _refused(path, reason)


def test_bounds_hold_at_load_time_too(tmp_path):
    """`LazyTensor.load` re-checks: a view altered after opening never reads outside its storage."""
    path, _ = valid_bin(tmp_path / "ok.bin")
    source = TorchPickleFile(path)
    tensor = source._tensors["b.bias"]
    object.__setattr__(tensor, "offset", -3)
    with pytest.raises(TorchPickleError, match="negative storage offset -3"):
        tensor.load()


ZIP_MEMBERS = {
    "dot-dot member": ([("archive/../../evil.sh", b"x")], "zip member name 'archive/../../evil.sh' leaves the archive"),
    "absolute member": ([("/etc/cron.d/evil", b"x")], "zip member name '/etc/cron.d/evil' leaves the archive"),
    "duplicate member": ([(PREFIX + "data/0", float_storage(12, 9.0))], "zip member 'archive/data/0' appears twice"),
}


@pytest.mark.parametrize("kind", sorted(ZIP_MEMBERS))
def test_unsafe_zip_members_are_refused(kind, tmp_path):
    members, reason = ZIP_MEMBERS[kind]
    pkl = state_dict_pickle([Tensor("w", "0", 12, 0, (12,), (1,))])
    with pytest.warns(UserWarning) if kind == "duplicate member" else _no_warning():
        write_torch_zip(tmp_path / "m.bin", pkl, {"0": float_storage(12)}, members)
    _refused(tmp_path / "m.bin", reason)


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_compression_bomb_is_refused_before_inflating(tmp_path):
    """A deflated 80 MiB record of zeros (~80 kB in the file) that a tensor claims whole."""
    numel = 20 * 2**20
    path = tmp_path / "bomb.bin"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(PREFIX + "data.pkl", state_dict_pickle([Tensor("w", "0", numel, 0, (numel,), (1,))]))
        with archive.open(PREFIX + "data/0", "w") as record:
            for _ in range(80):
                record.write(bytes(2**20))
    assert path.stat().st_size < 2**20
    _refused(path, "record 'archive/data/0' inflates", "to 83886080; refused (a compression bomb)")


def test_a_huge_pickle_record_is_refused_before_reading(tmp_path, monkeypatch):
    import blip_core.checkpoints.torch_pickle as torch_pickle

    monkeypatch.setattr(torch_pickle, "MAX_PICKLE_BYTES", 1000)
    padding = b"X" + (2000).to_bytes(4, "little") + b"a" * 2000 + b"0"  # a 2000-char str, popped
    pkl = state_dict_pickle([Tensor("w", "0", 12, 0, (12,), (1,))])
    write_torch_zip(tmp_path / "big.bin", pkl[:2] + padding + pkl[2:], {"0": float_storage(12)})
    _refused(tmp_path / "big.bin", "record 'archive/data.pkl' declares", "bytes; refused")


def _payloads(marker) -> dict[str, bytes]:
    """Pickles that, loaded by `pickle.loads`, create `marker` (checked in the test: they are live)."""
    touch = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"
    return {
        "GLOBAL+REDUCE os.system": b"\x80\x02" + global_("os", "system") + unicode(touch) + b"\x85R.",
        "GLOBAL posix.system": b"\x80\x02" + global_("posix", "system") + unicode(touch) + b"\x85R.",
        "STACK_GLOBAL builtins.eval": b"\x80\x04"
        + unicode("builtins")
        + unicode("eval")
        + b"\x93"
        + unicode(code)
        + b"\x85R.",
        "INST subprocess.Popen": b"("
        + b"("
        + unicode("touch")
        + unicode(str(marker))
        + b"l"
        + b"isubprocess\nPopen\n.",
        "OBJ os.system": b"(" + global_("os", "system") + unicode(touch) + b"o.",
        "NEWOBJ subprocess.Popen": b"\x80\x02"
        + global_("subprocess", "Popen")
        + b"("
        + unicode("touch")
        + unicode(str(marker))
        + b"l\x85\x81.",
        "BUILD __setstate__ exec": b"\x80\x02"
        + global_("collections", "OrderedDict")
        + b")R"
        + b"}"
        + unicode("__setstate__")
        + global_("builtins", "exec")
        + b"s"
        + b"b"
        + unicode(code)
        + b"b.",
        "nested in a persistent id": b"\x80\x02("
        + unicode("storage")
        + global_("os", "system")
        + unicode(touch)
        + b"\x85R"
        + unicode("0")
        + unicode("cpu")
        + b"K\x01tQ.",
        "inside a tensor's arguments": b"\x80\x02}"
        + unicode("w")
        + global_("torch._utils", "_rebuild_tensor_v2")
        + b"("
        + global_("os", "system")
        + unicode(touch)
        + b"\x85R"
        + b"K\x00)){tRs.",
        "copyreg reconstructor": b"\x80\x02"
        + global_("copyreg", "_reconstructor")
        + b"("
        + global_("os", "system")
        + global_("builtins", "object")
        + b"Ntr.",
    }


REFUSED_GLOBAL = {
    "GLOBAL+REDUCE os.system": "the global os.system",
    "GLOBAL posix.system": "the global posix.system",
    "STACK_GLOBAL builtins.eval": "the global builtins.eval",
    "INST subprocess.Popen": "the global subprocess.Popen",
    "OBJ os.system": "the global os.system",
    "NEWOBJ subprocess.Popen": "the global subprocess.Popen",
    "BUILD __setstate__ exec": "the global builtins.exec",
    "nested in a persistent id": "the global os.system",
    "inside a tensor's arguments": "the global os.system",
    "copyreg reconstructor": "the global copyreg._reconstructor",
}


@pytest.mark.parametrize("kind", sorted(REFUSED_GLOBAL))
def test_code_in_the_pickle_is_refused_and_never_runs(kind, tmp_path):
    marker = tmp_path / "marker"
    payload = _payloads(marker)[kind]
    if kind in ("GLOBAL+REDUCE os.system", "STACK_GLOBAL builtins.eval", "OBJ os.system"):
        pickle.loads(payload)  # the payload is live: plain pickle runs it
        assert marker.exists()
        marker.unlink()
    path = write_torch_zip(tmp_path / "pytorch_model.bin", payload, {"0": float_storage(12)})
    message = _refused(path, "refused to load", REFUSED_GLOBAL[kind])
    assert "a checkpoint may only hold tensors, storages and OrderedDict" in message
    assert not marker.exists()


ALLOWED_MISUSE = {
    "BUILD on a rebuild function": (
        global_("torch._utils", "_rebuild_tensor_v2") + b"}" + unicode("_function") + b"Nsb",
        "sets the state of a _Allowed (BUILD)",
    ),
    "NEWOBJ of OrderedDict": (global_("collections", "OrderedDict") + b")\x81", "constructs an object"),
    "INST of OrderedDict": (b"(icollections\nOrderedDict\n", "constructs an object"),
    "REDUCE of a storage type": (global_("torch", "FloatStorage") + b")R", "calls a _StorageType"),
    "OrderedDict with items": (
        global_("collections", "OrderedDict") + b"(" + b"(" + unicode("k") + b"K\x01t" + b"l\x85R",
        "OrderedDict may only be built empty",
    ),
    "too many arguments": (
        global_("torch._utils", "_rebuild_parameter") + b"(" + b"N" * 9 + b"tR",
        "calls _rebuild_parameter with malformed arguments",
    ),
    "huge size tuple": (
        global_("torch._utils", "_rebuild_tensor_v2") + b"(NK\x00" + b"(" + b"K\x01" * 65 + b"t)tR",
        "must be tuples of at most 64 ints",
    ),
    "nested tuple key": (b"}" + b")" + b"\x85" * 3 + b"Ns", "a dict key or set item is a tuple"),
    "setitem on a list": (b"]" + unicode("k") + b"Ns", "adds items to something that is not a dict"),
    "append to a dict": (b"}Na", "adds items to something that is not a list"),
    "text persistent id": (b"Pstorage\n", "unsupported persistent id (a str)"),
}


@pytest.mark.parametrize("kind", sorted(ALLOWED_MISUSE))
def test_allowed_globals_cannot_be_misused(kind, tmp_path):
    ops, reason = ALLOWED_MISUSE[kind]
    path = write_torch_zip(tmp_path / "x.bin", b"\x80\x02" + ops + b".", {"0": float_storage(12)})
    _refused(path, "refused to load", reason)


def _shared_pairs(depth: int) -> bytes:
    """`x = []; 60 times: x = [x, x]` with memo references (a 2**depth tree if expanded)."""
    ops = b"]q\x000"
    for level in range(depth):
        ops += b"](h" + bytes([level]) + b"h" + bytes([level]) + b"eq" + bytes([level + 1]) + b"0"
    return ops + b"h" + bytes([depth])


def test_shared_references_stay_shared(tmp_path):
    """60 nested `[x, x]` next to a tensor: loads at once, the tensor exact (no 2**60 expansion)."""
    pkl = state_dict_pickle([Tensor("w", "0", 12, 0, (12,), (1,))], {"junk": _shared_pairs(60)})
    path = write_torch_zip(tmp_path / "shared.bin", pkl, {"0": float_storage(12)})
    source = TorchPickleFile(path)
    assert source.keys() == ["w"]
    assert np.array_equal(source.get("w"), np.arange(12, dtype=np.float32))
    alone = write_torch_zip(tmp_path / "alone.bin", b"\x80\x02" + _shared_pairs(60) + b".", {})
    _refused(alone, "expected a state dict (name -> tensor), found list")


def test_self_reference_and_deep_nesting_give_clear_errors(tmp_path):
    loop = b"\x80\x02}q\x00" + unicode("self") + b"h\x00s."  # d = {}; d["self"] = d
    _refused(write_torch_zip(tmp_path / "loop.bin", loop, {}), "holds no tensors")
    deep = b"\x80\x02" + b"]" * 200_000 + b"a" * 199_999 + b"."  # lists nested 200000 deep
    _refused(write_torch_zip(tmp_path / "deep.bin", deep, {}), "expected a state dict (name -> tensor), found list")
    in_state = state_dict_pickle([Tensor("w", "0", 12, 0, (12,), (1,))], {"me": b"]q\x07h\x07a"})
    assert TorchPickleFile(write_torch_zip(tmp_path / "ok.bin", in_state, {"0": float_storage(12)})).keys() == ["w"]


def test_damaged_pickles_are_named(tmp_path):
    record = tensor_record(Tensor("w", "0", 12, 0, (12,), (1,)))
    for pkl, reason in [
        (b"\x80\x02" + record[:40], "cannot unpickle"),
        (b"\x80\x02h\x05.", "Memo value not found at index 5"),
        (b"\x80\x02\xff.", "cannot unpickle: UnpicklingError: unknown pickle opcode 0xff"),
        (b"\x80\x02}\x8a\x10" + b"\x7f" * 16 + b"Ns.", "a dict key or set item is a int"),
    ]:
        _refused(write_torch_zip(tmp_path / "d.bin", pkl, {"0": float_storage(12)}), reason)
