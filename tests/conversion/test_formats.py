"""Format conversions: lossless round trips, the TF port's h5, shards, processor files, Keras export."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import blip_torch
from blip_conversion import convert
from blip_core.checkpoint import open_file
from tests.helpers.golden import FIXTURES

HF = FIXTURES / "hf_checkpoints"


def tensors(path):
    source = open_file(path)
    return {name: source.get(name) for name in source.keys()}


def assert_same(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name


@pytest.mark.parametrize("middle", ["to_bin", "to_h5"])
def test_round_trips_are_bit_exact(tmp_path, tiny_checkpoints, middle):
    start = tiny_checkpoints["BlipForQuestionAnswering"]
    getattr(convert, middle)(str(start), str(tmp_path / "middle"))
    convert.to_safetensors(str(tmp_path / "middle"), str(tmp_path / "back"))
    assert_same(tensors(start / "model.safetensors"), tensors(tmp_path / "back" / "model.safetensors"))


def test_tf_port_h5_converts_bit_exact(tmp_path):
    convert.to_safetensors(str(HF / "caption_tf"), str(tmp_path / "out"))
    converted = tensors(tmp_path / "out" / "model.safetensors")
    direct = tensors(HF / "caption_tf" / "tf_model.h5")
    assert_same(converted, direct)  # the port's own (untied) decoder included
    assert "text_decoder.cls.predictions.decoder.weight" in converted


def test_transformers_bin_converts_and_drops_tied_copies(tmp_path):
    convert.to_safetensors(str(HF / "caption_bin"), str(tmp_path / "out"))
    converted = tensors(tmp_path / "out" / "model.safetensors")
    assert len(converted) == 91  # the .bin's tied decoder weight/bias are dropped, as transformers' safetensors do
    reference = tensors(HF / "caption_safetensors" / "model.safetensors")
    assert_same(converted, reference)


def test_sharded_bin_converts(tmp_path, tiny_checkpoints):
    import torch

    full = tensors(tiny_checkpoints["BlipForConditionalGeneration"] / "model.safetensors")
    names = sorted(full)
    folder = tmp_path / "sharded"
    folder.mkdir()
    shutil.copy(tiny_checkpoints["BlipForConditionalGeneration"] / "config.json", folder)
    weight_map = {}
    for index, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :]), start=1):
        shard = f"pytorch_model-0000{index}-of-00002.bin"
        torch.save({name: torch.from_numpy(full[name].copy()) for name in part}, folder / shard)
        weight_map.update(dict.fromkeys(part, shard))
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    convert.to_safetensors(str(folder), str(tmp_path / "out"))
    assert_same(tensors(tmp_path / "out" / "model.safetensors"), full)


def test_processor_files_travel(tmp_path, tiny_checkpoints):
    source = tmp_path / "src"
    shutil.copytree(HF / "caption_bin", source)
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(FIXTURES / "tokenizer" / name, source / name)
    convert.to_safetensors(str(source), str(tmp_path / "out"))
    assert (tmp_path / "out" / "tokenizer.json").read_bytes() == (
        FIXTURES / "tokenizer" / "tokenizer.json"
    ).read_bytes()
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert written == {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }


def test_existing_destination_needs_force(tmp_path, tiny_checkpoints):
    destination = tmp_path / "out"
    destination.mkdir()
    (destination / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="pass --force"):
        convert.to_h5(str(tiny_checkpoints["BlipModel"]), str(destination))
    assert (destination / "keep.txt").read_text() == "mine"
    convert.to_h5(str(tiny_checkpoints["BlipModel"]), str(destination), force=True)
    assert (destination / "tf_model.h5").exists() and not (destination / "keep.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folders left


def test_to_keras_weights_reload(tmp_path, tiny_checkpoints):
    import blip_tf

    convert.to_keras(str(tiny_checkpoints["BlipForConditionalGeneration"]), str(tmp_path / "keras"), saved_model=True)
    folder = tmp_path / "keras"
    assert (folder / "model.weights.h5").exists() and (folder / "saved_model" / "saved_model.pb").exists()
    reference = blip_tf.TFBlipForConditionalGeneration.from_pretrained(tiny_checkpoints["BlipForConditionalGeneration"])
    fresh = blip_tf.TFBlipForConditionalGeneration(reference.config)
    fresh.build_model()
    fresh.load_weights(str(folder / "model.weights.h5"))
    pixels = np.random.RandomState(0).randn(1, 3, 40, 40).astype(np.float32)
    ids = np.array([[97, 5, 6, 7]])
    a = reference(pixel_values=pixels, input_ids=ids).logits.numpy()
    b = fresh(pixel_values=pixels, input_ids=ids).logits.numpy()
    assert np.array_equal(a, b)


def test_torch_reads_what_to_h5_wrote(tmp_path, tiny_checkpoints):
    convert.to_h5(str(tiny_checkpoints["BlipForImageTextRetrieval"]), str(tmp_path / "h5"))
    original = blip_torch.BlipForImageTextRetrieval.from_pretrained(tiny_checkpoints["BlipForImageTextRetrieval"])
    again = blip_torch.BlipForImageTextRetrieval.from_pretrained(tmp_path / "h5")
    for (name, a), (_, b) in zip(original.state_dict().items(), again.state_dict().items(), strict=True):
        assert np.array_equal(a.numpy(), b.numpy()), name
