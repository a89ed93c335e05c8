"""Checkpoint I/O without frameworks: safetensors, the restricted `.bin` reader, TF `.h5` names."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest

from blip_core.checkpoints.h5_reader import H5File
from blip_core.checkpoints.safetensors_io import (
    SafetensorsError,
    SafetensorsFile,
    float32_to_bf16_bits,
    write_safetensors,
)
from blip_core.checkpoints.sources import open_file, read_all, save_safetensors
from blip_core.checkpoints.torch_pickle import TorchPickleError, TorchPickleFile
from tests.helpers.h5_files import write_tf_h5


def _tensors():
    rng = np.random.RandomState(0)
    return {
        "a.weight": rng.randn(3, 5).astype(np.float32),
        "b.bias": rng.randn(7).astype(np.float16),
        "ids": np.arange(6, dtype=np.int64).reshape(2, 3),
        "scalar": np.array(2.5, dtype=np.float32),
        "flags": np.array([True, False]),
    }


def test_safetensors_round_trip_and_library_interop(tmp_path):
    from safetensors.numpy import load_file, save_file

    tensors = _tensors()
    path = save_safetensors(tmp_path / "model.safetensors", tensors)
    loaded = load_file(str(path))  # the reference library reads our file
    assert set(loaded) == set(tensors)
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype and np.array_equal(loaded[name], value)
    save_file(tensors, str(tmp_path / "ref.safetensors"), metadata={"format": "pt"})
    ours = read_all(open_file(tmp_path / "ref.safetensors"))  # and we read its file
    assert all(np.array_equal(ours[name], value) for name, value in tensors.items())


def test_bf16_is_read_exactly_and_written_back(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 1e-3, 65504.0], dtype=np.float32)
    bits = float32_to_bf16_bits(values)
    write_safetensors(tmp_path / "bf.safetensors", {"x": bits}, bf16_names=frozenset({"x"}))
    source = SafetensorsFile(tmp_path / "bf.safetensors")
    assert source.dtype("x") == "BF16"
    widened = source.get("x")
    assert widened.dtype == np.float32
    assert np.array_equal(float32_to_bf16_bits(widened), bits)
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    assert torch.equal(load_file(str(tmp_path / "bf.safetensors"))["x"].float(), torch.from_numpy(widened))


def test_reads_are_aligned_and_lent_views_match_reads(tmp_path):
    """get() gives fresh 64-byte-aligned arrays; lend() gives equal read-only-in-effect views valid after close."""
    from safetensors.numpy import save_file

    tensors = _tensors()
    save_file(tensors, str(tmp_path / "ref.safetensors"))
    source = SafetensorsFile(tmp_path / "ref.safetensors")
    lent = {}
    for name, value in tensors.items():
        fresh = source.get(name)
        assert fresh.ctypes.data % 64 == 0 and fresh.flags.writeable, name
        assert fresh.dtype == value.dtype and np.array_equal(fresh, value), name
        lent[name] = source.lend(name)
    source.close()  # lent views stay valid (their pages come back from the file)
    for name, value in tensors.items():
        assert np.array_equal(lent[name], value), name
    lent["a.weight"][0, 0] = 123.0  # copy-on-write: the file is never changed
    assert np.array_equal(SafetensorsFile(tmp_path / "ref.safetensors").get("a.weight"), tensors["a.weight"])


def test_truncated_safetensors_is_named(tmp_path):
    path = save_safetensors(tmp_path / "model.safetensors", _tensors())
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-10])
    with pytest.raises(SafetensorsError, match="cut.safetensors is truncated: tensor"):
        SafetensorsFile(tmp_path / "cut.safetensors")
    (tmp_path / "tiny.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(SafetensorsError, match="not a safetensors file"):
        SafetensorsFile(tmp_path / "tiny.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(SafetensorsError, match="truncated or not a safetensors file"):
        SafetensorsFile(tmp_path / "junk.safetensors")


def test_failed_write_leaves_previous_file(tmp_path):
    path = save_safetensors(tmp_path / "model.safetensors", _tensors())
    before = path.read_bytes()
    with pytest.raises(TypeError, match="cannot store"):
        save_safetensors(path, {"ok": np.zeros(3, np.float32), "bad": np.array(["text"])})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]
    with pytest.raises(FileExistsError, match="already exists"):
        save_safetensors(path, _tensors(), overwrite=False)


def _torch_save(obj, path):
    torch = pytest.importorskip("torch")
    torch.save(obj, path)
    return torch


def test_bin_reader_matches_torch_save(tmp_path):
    torch = pytest.importorskip("torch")
    base = torch.randn(6, 4)
    state = {
        "w": base,
        "tied": base,  # shares storage, as the .bin route writes tied weights
        "view": base[1:3],  # offset into a shared storage
        "transposed": base.t(),  # non-contiguous strides
        "half": torch.randn(5).half(),
        "bf16": torch.randn(3, 2).bfloat16(),
        "ids": torch.arange(512).unsqueeze(0),
        "param": torch.nn.Parameter(torch.randn(2, 2)),
        "scalar": torch.tensor(1.5),
    }
    _torch_save(state, tmp_path / "pytorch_model.bin")
    source = TorchPickleFile(tmp_path / "pytorch_model.bin")
    assert source.keys() == list(state)
    for name, tensor in state.items():
        expected = tensor.detach().float().numpy() if tensor.dtype == torch.bfloat16 else tensor.detach().numpy()
        got = source.get(name)
        assert got.shape == tuple(tensor.shape) and np.array_equal(got, expected), name
        assert source.shape(name) == tuple(tensor.shape)


def test_bin_reader_unwraps_original_checkpoints(tmp_path):
    torch = pytest.importorskip("torch")
    _torch_save({"model": {"x": torch.ones(2)}, "epoch": 3, "config": {"lr": 0.1}}, tmp_path / "ckpt.pth")
    assert TorchPickleFile(tmp_path / "ckpt.pth").keys() == ["x"]


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /tmp/blip_dual_pwned",))


def _zip_with_pickle(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")


def test_malicious_pickle_is_refused_naming_the_global(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    _zip_with_pickle(path, pickle.dumps({"w": _Evil()}, protocol=2))
    with pytest.raises(TorchPickleError, match=r"refused to load.*(posix|os)\.system"):
        TorchPickleFile(path)
    _zip_with_pickle(path, pickle.dumps({"w": io.BytesIO}, protocol=2))
    with pytest.raises(TorchPickleError, match=r"_io\.BytesIO"):
        TorchPickleFile(path)


def test_not_a_zip_and_truncated_zip(tmp_path):
    legacy = tmp_path / "legacy.bin"
    legacy.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(TorchPickleError, match="not a torch zip archive"):
        TorchPickleFile(legacy)
    torch = pytest.importorskip("torch")
    _torch_save({"w": torch.randn(100, 100)}, tmp_path / "full.bin")
    data = (tmp_path / "full.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(TorchPickleError):
        TorchPickleFile(tmp_path / "cut.bin").get("w")


def test_h5_reader_applies_tf_names_and_layouts(tmp_path):
    rng = np.random.RandomState(1)
    qkv = rng.randn(8, 24).astype(np.float32)  # Keras (in, out)
    conv = rng.randn(4, 4, 3, 8).astype(np.float32)  # Keras (kh, kw, in, out)
    gamma, emb = rng.randn(8).astype(np.float32), rng.randn(11, 8).astype(np.float32)
    decoder = rng.randn(8, 11).astype(np.float32)
    scope = "tf_blip_for_conditional_generation"
    write_tf_h5(
        tmp_path / "tf_model.h5",
        scope,
        {
            "vision_model": {
                "vision_model/encoder/layers_._0/self_attn/qkv/kernel:0": qkv,
                "vision_model/embeddings/patch_embedding/kernel:0": conv,
                "vision_model/embeddings/class_embedding:0": rng.randn(1, 1, 8).astype(np.float32),
            },
            "text_decoder": {
                "text_decoder/bert/encoder/layer_._1/output/LayerNorm/gamma:0": gamma,
                "text_decoder/bert/embeddings/word_embeddings/embeddings:0": emb,
                "text_decoder/cls/predictions/decoder/kernel:0": decoder,
                "text_decoder/cls/predictions/bias:0": rng.randn(11).astype(np.float32),
            },
        },
    )
    source = H5File(tmp_path / "tf_model.h5")
    assert source.keys() == [
        "vision_model.encoder.layers.0.self_attn.qkv.weight",
        "vision_model.embeddings.patch_embedding.weight",
        "vision_model.embeddings.class_embedding",
        "text_decoder.bert.encoder.layer.1.output.LayerNorm.weight",
        "text_decoder.bert.embeddings.word_embeddings.weight",
        "text_decoder.cls.predictions.decoder.weight",
        "text_decoder.cls.predictions.bias",
    ]
    assert np.array_equal(source.get("vision_model.encoder.layers.0.self_attn.qkv.weight"), qkv.T)
    assert source.shape("vision_model.embeddings.patch_embedding.weight") == (8, 3, 4, 4)
    assert np.array_equal(source.get("vision_model.embeddings.patch_embedding.weight"), conv.transpose(3, 2, 0, 1))
    assert np.array_equal(source.get("text_decoder.cls.predictions.decoder.weight"), decoder.T)
    assert np.array_equal(source.get("text_decoder.bert.embeddings.word_embeddings.weight"), emb)


def test_tf_named_safetensors_are_renamed(tmp_path):
    kernel = np.arange(6, dtype=np.float32).reshape(2, 3)
    write_safetensors(
        tmp_path / "model.safetensors",
        {
            "text_decoder/bert/encoder/layer_._0/attention/self/query/kernel:0": kernel,
            "blip/logit_scale:0": np.array(1.0, np.float32),
        },
        metadata={"format": "tf"},
    )
    source = open_file(tmp_path / "model.safetensors")
    assert sorted(source.keys()) == ["logit_scale", "text_decoder.bert.encoder.layer.0.attention.self.query.weight"]
    assert np.array_equal(source.get("text_decoder.bert.encoder.layer.0.attention.self.query.weight"), kernel.T)


def test_damaged_h5_is_named(tmp_path):
    (tmp_path / "tf_model.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(ValueError, match="tf_model.h5 is not a readable HDF5 file"):
        H5File(tmp_path / "tf_model.h5")


def test_bad_tf_named_safetensors_are_named(tmp_path):
    kernel = np.zeros((2, 3, 4), np.float32)
    write_safetensors(tmp_path / "a.safetensors", {"vision_model/fc/kernel:0": kernel}, metadata={"format": "tf"})
    with pytest.raises(ValueError, match=r"a.safetensors: tensor 'vision_model/fc/kernel:0': a Keras kernel must be"):
        open_file(tmp_path / "a.safetensors")
    both = {"x/bias:0": np.zeros(2, np.float32), "x/bias:1": np.ones(2, np.float32)}
    write_safetensors(tmp_path / "b.safetensors", both, metadata={"format": "tf"})
    with pytest.raises(ValueError, match=r"'x/bias:0' and 'x/bias:1' both map to 'x.bias'"):
        open_file(tmp_path / "b.safetensors")
