"""Keras 3 weights files (`save_weights`, `blip-convert to-keras`) read without TensorFlow, and hostile HDF5
files refused by both h5 readers, each error naming the file and the dataset."""

from __future__ import annotations

import numpy as np
import pytest

from blip_core.checkpoints.h5_reader import H5File, H5ReadError
from blip_core.checkpoints.safetensors_io import float32_to_bf16_bits
from blip_core.checkpoints.sources import open_file
from tests.helpers.h5_files import write_keras3, write_tf_h5

VISION = "layers/tf_blip_vision_model"
BLOCK = f"{VISION}/encoder/layers/tf_blip_encoder_layer_1"
TEXT = "layers/tf_blip_text_model"
TEXT_NORM = f"{TEXT}/encoder/layer/tf_blip_text_layer/attention/output_layer/LayerNorm"


def _keras3_layers(rng):
    """Group paths as Keras 3.15 writes them for blip_tf (class names of list items, `layers/` under models)."""
    f32 = np.float32
    return {
        "": ("tf_blip_model", [np.array(2.5, f32)]),
        VISION: ("vision_model", []),
        f"{VISION}/embeddings": ("embeddings", [rng.randn(1, 1, 8).astype(f32), rng.randn(1, 5, 8).astype(f32)]),
        f"{VISION}/embeddings/patch_embedding": (
            "patch_embedding",
            [rng.randn(4, 4, 3, 8).astype(f32), np.ones(8, f32)],
        ),
        f"{VISION}/encoder": ("encoder", []),
        BLOCK: ("layers_._1", []),
        f"{BLOCK}/self_attn": ("self_attn", []),
        f"{BLOCK}/self_attn/qkv": ("qkv", [rng.randn(8, 24).astype(f32), rng.randn(24).astype(f32)]),
        f"{VISION}/layers/layer_normalization": (
            "post_layernorm",
            [rng.randn(8).astype(f32), rng.randn(8).astype(f32)],
        ),
        TEXT: ("text_model", []),
        f"{TEXT}/embeddings": ("embeddings", []),
        f"{TEXT}/embeddings/word_embeddings": ("word_embeddings", [rng.randn(11, 6).astype(f32)]),
        f"{TEXT}/encoder": ("encoder", []),
        f"{TEXT}/encoder/layer/tf_blip_text_layer": ("layer_._0", []),
        f"{TEXT}/encoder/layer/tf_blip_text_layer/attention": ("attention", []),
        f"{TEXT}/encoder/layer/tf_blip_text_layer/attention/output_layer": ("output", []),
        f"{TEXT}/encoder/layer/tf_blip_text_layer/attention/output_layer/dropout": ("dropout_3", []),
        TEXT_NORM: ("LayerNorm", [rng.randn(6).astype(f32), rng.randn(6).astype(f32)]),
    }


def test_keras3_names_come_from_layer_names_and_layouts_from_the_table(tmp_path):
    layers = {path: values for path, (_, values) in _keras3_layers(np.random.RandomState(2)).items()}
    write_keras3(tmp_path / "model.weights.h5", _keras3_layers(np.random.RandomState(2)))
    source = open_file(tmp_path / "model.weights.h5")
    embeddings, patch, qkv = (
        layers[f"{VISION}/embeddings"],
        layers[f"{VISION}/embeddings/patch_embedding"],
        layers[f"{BLOCK}/self_attn/qkv"],
    )
    post, norm = layers[f"{VISION}/layers/layer_normalization"], layers[TEXT_NORM]
    expected = {
        "logit_scale": layers[""][0],
        "vision_model.embeddings.class_embedding": embeddings[0],
        "vision_model.embeddings.position_embedding": embeddings[1],
        "vision_model.embeddings.patch_embedding.weight": patch[0].transpose(3, 2, 0, 1),
        "vision_model.embeddings.patch_embedding.bias": patch[1],
        "vision_model.encoder.layers.1.self_attn.qkv.weight": qkv[0].T,
        "vision_model.encoder.layers.1.self_attn.qkv.bias": qkv[1],
        "vision_model.post_layernorm.weight": post[0],
        "vision_model.post_layernorm.bias": post[1],
        "text_model.embeddings.word_embeddings.weight": layers[f"{TEXT}/embeddings/word_embeddings"][0],
        "text_model.encoder.layer.0.attention.output.LayerNorm.weight": norm[0],
        "text_model.encoder.layer.0.attention.output.LayerNorm.bias": norm[1],
    }
    assert sorted(source.keys()) == sorted(expected)
    for name, value in expected.items():
        got = source.get(name)
        assert got.shape == source.shape(name) and got.dtype == value.dtype and np.array_equal(got, value), name
        assert got.flags.c_contiguous


def test_keras3_bfloat16_is_widened_exactly(tmp_path):
    import h5py

    values = np.array([1.0, -2.5, 3.140625, 65280.0], dtype=np.float32)
    with h5py.File(tmp_path / "model.weights.h5", "w") as h5:
        group = h5.create_group("layers/tf_blip_vision_model/vars")
        group.attrs["name"] = "vision_model"
        group = h5.create_group("layers/tf_blip_vision_model/post_layernorm/vars")
        group.attrs["name"] = "post_layernorm"
        bits = float32_to_bf16_bits(values).view(np.dtype("V2"))  # how h5py stores ml_dtypes' bfloat16
        group.create_dataset("0", data=bits).attrs["dtype"] = "bfloat16"
    source = open_file(tmp_path / "model.weights.h5")
    assert source.dtype("vision_model.post_layernorm.weight") == "bfloat16"
    assert np.array_equal(source.get("vision_model.post_layernorm.weight"), values)


def test_keras3_unknown_variable_gets_a_name_that_fails_validation(tmp_path):
    from blip_core.config.configuration import BlipVisionConfig
    from blip_core.weights import CheckpointError, prepare_state

    layers = {
        "": ("tf_blip_vision_model", []),
        "post_layernorm": ("post_layernorm", [np.ones(8, np.float32), np.zeros(8, np.float32), np.ones(8, np.float32)]),
    }
    write_keras3(tmp_path / "model.weights.h5", layers)
    source = open_file(tmp_path / "model.weights.h5")
    assert "post_layernorm.vars.2" in source.keys()
    with pytest.raises(CheckpointError, match=r"unexpected \(1\):\n    post_layernorm.vars.2"):
        prepare_state(source, "BlipVisionModel", BlipVisionConfig(hidden_size=8, num_hidden_layers=1))


def _keras3_base(path):
    write_keras3(
        path, {"": ("tf_blip_vision_model", []), "post_layernorm": ("post_layernorm", [np.ones(8, np.float32)])}
    )


def _hostile_keras3(kind: str, path) -> str:
    """Make `path` a Keras 3 weights file with one hostile feature; return the dataset or group it names."""
    import h5py

    _keras3_base(path)
    with h5py.File(path, "a") as h5:
        group = h5["post_layernorm/vars"]
        if kind == "external link":
            group["1"] = h5py.ExternalLink("/etc/other.h5", "/data")
        elif kind == "soft link":
            group["1"] = h5py.SoftLink("/post_layernorm/vars/0")
        elif kind == "external dataset":
            (path.parent / "raw.bin").write_bytes(b"\x00" * 32)
            group.create_dataset("1", shape=(8,), dtype="f4", external=[(str(path.parent / "raw.bin"), 0, 32)])
        elif kind == "virtual dataset":
            layout = h5py.VirtualLayout(shape=(8,), dtype="f4")
            layout[:] = h5py.VirtualSource(str(path), "post_layernorm/vars/0", shape=(8,))
            group.create_virtual_dataset("1", layout)
        elif kind == "integer dtype":
            group.create_dataset("1", data=np.arange(8))
        elif kind == "string dtype":
            group.create_dataset("1", data=np.array([b"payload"] * 8))
        elif kind == "empty dataspace":
            group.create_dataset("1", data=h5py.Empty("f4"))
        elif kind == "size bomb":
            group.create_dataset("1", shape=(200_000, 100_000), dtype="f4", chunks=(64, 64), compression="gzip")
        elif kind == "wrong rank":
            group.create_dataset("1", data=np.ones((8, 2), np.float32))
        elif kind == "stray dataset":
            h5.create_dataset("post_layernorm/extra", data=np.ones(8, np.float32))
            return "post_layernorm/extra"
        elif kind == "no layer name":
            del group.attrs["name"]
            return "post_layernorm/vars"
        elif kind == "bad layer name":
            group.attrs["name"] = "../../etc"
            return "post_layernorm/vars"
        elif kind == "cycle":
            h5["post_layernorm/loop"] = h5["post_layernorm"]  # a hard link to its own parent
            return "post_layernorm/loop"
    return "post_layernorm/vars/1"


HOSTILE = {
    "external link": "ExternalLink; only hard links are followed",
    "soft link": "SoftLink; only hard links are followed",
    "external dataset": "stores its data in an external file; refused",
    "virtual dataset": "is a virtual dataset; refused",
    "integer dtype": "has dtype int64, expected a float weight",
    "string dtype": "has dtype |S7, expected a float weight",
    "empty dataspace": "holds no array",
    "size bomb": "declares 80000000000 bytes but stores 0; refused",
    "wrong rank": r"\(post_layernorm.bias\) has 2 dimensions, expected 1",
    "stray dataset": "is not a numbered Keras variable",
    "no layer name": "stores no layer name: a Keras 3 weights file written by Keras older than 3.6",
    "bad layer name": "invalid layer name '../../etc'",
    "cycle": "groups nested deeper than 64 levels",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_keras3_files_are_refused_naming_file_and_dataset(kind, tmp_path):
    path = tmp_path / "model.weights.h5"
    where = _hostile_keras3(kind, path)
    with pytest.raises(H5ReadError, match=HOSTILE[kind]) as info:
        source = open_file(path)
        source.get("post_layernorm.bias")
    message = str(info.value)
    assert str(path) in message and (where in message or kind == "cycle"), message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("kind", ["external link", "soft link", "integer dtype", "size bomb", "external dataset"])
def test_hostile_tf_port_files_are_refused(kind, tmp_path):
    import h5py

    path = tmp_path / "tf_model.h5"
    scope = "tf_blip_vision_model"
    write_tf_h5(path, scope, {"post_layernorm": {"post_layernorm/gamma:0": np.ones(8, np.float32)}})
    with h5py.File(path, "a") as h5:
        group = h5[f"post_layernorm/{scope}/post_layernorm"]
        if kind == "external link":
            group["beta:0"] = h5py.ExternalLink("/etc/other.h5", "/data")
        elif kind == "soft link":
            group["beta:0"] = h5py.SoftLink(f"/post_layernorm/{scope}/post_layernorm/gamma:0")
        elif kind == "integer dtype":
            group.create_dataset("beta:0", data=np.arange(8))
        elif kind == "size bomb":
            group.create_dataset("beta:0", shape=(200_000, 100_000), dtype="f4", chunks=(64, 64))
        else:
            (tmp_path / "raw.bin").write_bytes(b"\x00" * 32)
            group.create_dataset("beta:0", shape=(8,), dtype="f4", external=[(str(tmp_path / "raw.bin"), 0, 32)])
        names = [f"{scope}/post_layernorm/gamma:0", f"{scope}/post_layernorm/beta:0"]
        h5["post_layernorm"].attrs["weight_names"] = np.array([name.encode() for name in names])
    with pytest.raises(H5ReadError, match=HOSTILE[kind].split(";")[0]) as info:
        H5File(path).get("post_layernorm.bias")
    assert str(path) in str(info.value) and "beta:0" in str(info.value)


def test_h5_content_decides_the_layout_not_the_name(tmp_path):
    """A Keras 3 file named tf_model.h5, and a TF-port file named model.weights.h5, are both read."""
    _keras3_base(tmp_path / "tf_model.h5")
    assert open_file(tmp_path / "tf_model.h5").keys() == ["post_layernorm.weight"]
    write_tf_h5(
        tmp_path / "x.weights.h5",
        "tf_blip_vision_model",
        {"post_layernorm": {"post_layernorm/beta:0": np.ones(3, np.float32)}},
    )
    assert open_file(tmp_path / "x.weights.h5").keys() == ["post_layernorm.bias"]


def test_keras_owner_table_covers_every_parameter_once():
    from blip_core.checkpoints.keras_weights import owner_parameters

    table = owner_parameters()
    assert table["vision_model.embeddings"] == (("class_embedding", "raw"), ("position_embedding", "raw"))
    assert table["text_decoder.cls.predictions.decoder"] == (("weight", "linear"), ("bias", "linear"))
    assert table["encoder.layers.#.self_attn.qkv"] == (("weight", "linear"), ("bias", "linear"))
    assert table[""] == (("logit_scale", "raw"),)
