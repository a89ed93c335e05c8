"""Crafted hostile `tf_model.h5` files (edits of one written by `transformers`): links, external and virtual
datasets that point at other files on the machine, region references, dtypes that are not numbers, huge
declared shapes, plugin filters. Each is refused naming the file, the dataset and the reason, through
`blip_torch` and `blip_tf` `from_pretrained` and `blip-convert to-safetensors`; no byte of the other file
ever reaches a converted checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from blip_conversion.cli import main
from blip_core.checkpoints.h5_reader import H5ReadError
from blip_core.checkpoints.sources import open_file

h5py = pytest.importorskip("h5py")

FIXTURE = Path(__file__).parents[1] / "fixtures" / "hf_checkpoints" / "caption_tf"
GROUP = "vision_model/tf_blip_for_conditional_generation/vision_model/post_layernorm"
TARGET = f"{GROUP}/beta:0"
SECRET = np.full(24, 1234.5678, np.float32).tobytes()  # what an unrelated local file holds


def _secret_file(folder: Path) -> Path:
    path = folder.parent / "secret.bin"
    path.write_bytes(SECRET)
    return path


def _replace(h5, secret: Path, kind: str) -> None:
    """Put the hostile feature where the post-layernorm bias (24 float32) was."""
    del h5[TARGET]
    group = h5[GROUP]
    if kind == "external dataset":
        group.create_dataset("beta:0", shape=(24,), dtype="f4", external=[(str(secret), 0, len(SECRET))])
    elif kind == "external link":
        other = secret.with_suffix(".h5")
        with h5py.File(other, "w") as outside:
            outside["data"] = np.frombuffer(SECRET, np.float32)
        group["beta:0"] = h5py.ExternalLink(str(other), "/data")
    elif kind == "virtual dataset":
        other = secret.with_suffix(".h5")
        with h5py.File(other, "w") as outside:
            outside["data"] = np.frombuffer(SECRET, np.float32)
        layout = h5py.VirtualLayout(shape=(24,), dtype="f4")
        layout[:] = h5py.VirtualSource(str(other), "data", shape=(24,))
        group.create_virtual_dataset("beta:0", layout)
    elif kind == "soft link":
        h5["elsewhere"] = np.frombuffer(SECRET, np.float32)
        group["beta:0"] = h5py.SoftLink("/elsewhere")
    elif kind == "region reference":
        group.create_dataset("beta:0", data=[h5[f"{GROUP}/gamma:0"].regionref[0:4]] * 24, dtype=h5py.regionref_dtype)
    elif kind == "byte strings":
        group.create_dataset("beta:0", data=np.array([b"payload"] * 24))
    elif kind == "compound":
        group.create_dataset("beta:0", data=np.zeros(24, dtype=[("a", "<f2"), ("b", "<f2")]))
    elif kind == "bf16-sized compound":
        group.create_dataset("beta:0", data=np.zeros(24, dtype=[("a", "i1"), ("b", "i1")]))
        group["beta:0"].attrs["dtype"] = "bfloat16"
    elif kind == "vlen":
        group.create_dataset("beta:0", shape=(24,), dtype=h5py.vlen_dtype(np.float32))
    elif kind == "huge shape":
        group.create_dataset("beta:0", shape=(2**40, 2**20), dtype="f4", chunks=(1, 1024))
    elif kind == "plugin filter":
        space = h5py.h5s.create_simple((24,))
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_chunk((24,))
        plist.set_filter(32015, h5py.h5z.FLAG_OPTIONAL)  # an id HDF5 would look up as a plugin library
        h5py.h5d.create(group.id, b"beta:0", h5py.h5t.IEEE_F32LE, space, dcpl=plist)


REASONS = {
    "external dataset": "stores its data in an external file; refused",
    "external link": "is a ExternalLink; only hard links are followed",
    "virtual dataset": "is a virtual dataset; refused",
    "soft link": "is a SoftLink; only hard links are followed",
    "region reference": "expected a float weight",
    "byte strings": "has dtype |S7, expected a float weight",
    "compound": "expected a float weight",
    "bf16-sized compound": "expected a float weight",
    "vlen": "has dtype object, expected a float weight",
    "huge shape": "declares 4611686018427387904 bytes but stores 0; refused (a size bomb)",
    "plugin filter": "uses the HDF5 filter 32015, not a built-in one; refused",
}


def _hostile_folder(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(FIXTURE, folder)
    secret = _secret_file(folder)
    with h5py.File(folder / "tf_model.h5", "a") as h5:
        _replace(h5, secret, kind)
    return folder


@pytest.mark.parametrize("kind", sorted(REASONS))
def test_the_reader_refuses(kind, tmp_path):
    folder = _hostile_folder(tmp_path, kind)
    with pytest.raises(H5ReadError) as info:
        source = open_file(folder / "tf_model.h5")
        source.get("vision_model.post_layernorm.bias")
    message = str(info.value)
    assert str(folder / "tf_model.h5") in message and "beta:0" in message and REASONS[kind] in message, message


@pytest.mark.parametrize("kind", ["external dataset", "external link", "virtual dataset", "soft link", "byte strings"])
def test_blip_convert_refuses_and_writes_nothing(kind, tmp_path, capsys):
    folder = _hostile_folder(tmp_path, kind)
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(["to-safetensors", str(folder), str(tmp_path / "out")]))
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1, err
    assert "tf_model.h5" in err[0] and REASONS[kind] in err[0], err[0]
    assert not (tmp_path / "out").exists()
    for path in tmp_path.rglob("*.safetensors"):
        assert SECRET not in path.read_bytes()


@pytest.mark.parametrize("kind", ["external dataset", "external link", "virtual dataset", "region reference"])
def test_blip_torch_from_pretrained_refuses(kind, tmp_path):
    pytest.importorskip("torch")
    from blip_torch import BlipForConditionalGeneration

    folder = _hostile_folder(tmp_path, kind)
    with pytest.raises((ValueError, OSError)) as info:
        BlipForConditionalGeneration.from_pretrained(folder)
    assert "tf_model.h5" in str(info.value) and REASONS[kind] in str(info.value), str(info.value)


@pytest.mark.parametrize("kind", ["external dataset", "external link", "virtual dataset", "vlen"])
def test_blip_tf_from_pretrained_refuses(kind, tmp_path):
    pytest.importorskip("tensorflow")
    from blip_tf import TFBlipForConditionalGeneration

    folder = _hostile_folder(tmp_path, kind)
    with pytest.raises((ValueError, OSError)) as info:
        TFBlipForConditionalGeneration.from_pretrained(folder)
    assert "tf_model.h5" in str(info.value) and REASONS[kind] in str(info.value), str(info.value)


def test_the_untouched_fixture_converts(tmp_path, capsys):
    """The same copy without an edit converts: the refusals come from the edits."""
    folder = tmp_path / "model"
    shutil.copytree(FIXTURE, folder)
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(["to-safetensors", str(folder), str(tmp_path / "out")]))
    assert exit_info.value.code == 0, capsys.readouterr().err
    assert open_file(tmp_path / "out" / "model.safetensors").get("vision_model.post_layernorm.bias").shape == (24,)


# Three bit flips of the small Keras 3 weights file of tests/security/test_fuzz_readers.py, found by its long run:
# libhdf5 (h5py 3.x) dies with SIGSEGV reading the top `vars` group's `name` attribute.
SEGFAULT_FLIPS = ((842, 69, 71), (1881, 1, 3), (8156, 0, 4))


def test_a_file_that_crashes_libhdf5_is_refused_not_fatal(tmp_path):
    from tests.security.test_fuzz_readers import _valid_keras3

    data = bytearray(_valid_keras3(tmp_path))
    for offset, before, after in SEGFAULT_FLIPS:
        assert data[offset] == before
        data[offset] = after
    path = tmp_path / "model.weights.h5"
    path.write_bytes(bytes(data))
    with pytest.raises(H5ReadError, match="model.weights.h5"):
        open_file(path)  # this process survives: the read that crashes runs in a forked child first


def test_a_crash_or_a_hang_of_the_child_read_is_an_error(tmp_path, monkeypatch):
    import os
    import signal
    import time

    from blip_core.checkpoints import h5_probe

    path = tmp_path / "x.h5"
    with pytest.raises(H5ReadError, match=r"x.h5: the HDF5 library crashed reading this file \(SIGSEGV\)"):
        h5_probe.check_in_child(path, lambda _: os.kill(os.getpid(), signal.SIGSEGV), H5ReadError)
    monkeypatch.setattr(h5_probe, "INDEX_TIMEOUT_S", 0.5)  # a hang while indexing (a damaged attribute)
    with pytest.raises(H5ReadError, match="x.h5: indexing this HDF5 file did not finish in 0 s"):
        h5_probe.check_in_child(path, lambda _: time.sleep(30), H5ReadError)

    class Slow:  # indexes at once, then hangs reading a tensor
        def keys(self):
            return ["t"]

        def get(self, name):
            time.sleep(30)

        def close(self):
            pass

    monkeypatch.setattr(h5_probe, "INDEX_TIMEOUT_S", 30.0)
    monkeypatch.setattr(h5_probe, "PROBE_TIMEOUT_S", 0.5)
    with pytest.raises(H5ReadError, match="x.h5: reading this HDF5 file did not finish in 0 s"):
        h5_probe.check_in_child(path, lambda _: Slow(), H5ReadError)
    h5_probe.check_in_child(path, lambda _: 1 / 0, H5ReadError)  # Python errors are left to the real read


def test_an_attribute_declaring_too_many_elements_is_refused_before_reading(tmp_path, monkeypatch):
    """A damaged header can give `layer_names` billions of elements; the count is checked before the read."""
    from blip_core.checkpoints import h5_reader

    folder = tmp_path / "caption_tf"
    shutil.copytree(FIXTURE, folder)
    monkeypatch.setattr(h5_reader, "MAX_OBJECTS", 2)  # the fixture lists 30 weight names for its vision model
    with pytest.raises(H5ReadError, match=r"attribute 'weight_names' of '/vision_model' declares 30 elements; refused"):
        open_file(folder / "tf_model.h5")
