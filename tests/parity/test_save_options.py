"""`save_pretrained`'s options in both frameworks: shards and their index exactly as `transformers` 4.57.6 writes
them (tests/golden/loading_options.json), `pytorch_model.bin` / `tf_model.h5`, variants, bit-exact round trips
within and across frameworks, atomic writes, and which old weight files a save removes."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
import torch

import blip_tf
import blip_torch
from blip_core.checkpoints.sources import open_file, open_weights, read_all
from blip_core.io.hub import resolve_weights
from blip_core.weights.names import MODEL_CLASSES
from tests.helpers.checkpoints import write_tiny_checkpoint
from tests.helpers.golden import FIXTURES, load_json
from tests.helpers.tiny import seeded_weights, weights_hash

GOLDEN = load_json("loading_options.json")
SHARD_BYTES = GOLDEN["shard_bytes"]
TF_SHARDED_H5 = FIXTURES / "hf_checkpoints" / "caption_tf_sharded_h5"  # written by transformers' TF port, "60KB"
CAPTION = "BlipForConditionalGeneration"


def model_class(framework: str, class_name: str = CAPTION):
    return getattr(blip_torch, class_name) if framework == "pt" else getattr(blip_tf, "TF" + class_name)


def saved(folder, **options) -> dict[str, np.ndarray]:
    """Every tensor of a saved folder, canonical names (the loaders' own reader)."""
    source = open_weights(resolve_weights(folder, **options))
    try:
        return read_all(source)
    finally:
        source.close()


def assert_same(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        assert actual[name].dtype == value.dtype and np.array_equal(actual[name], value), name


def files(folder) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("framework", ["pt", "tf"])
@pytest.mark.parametrize("class_name", MODEL_CLASSES)
def test_safetensors_shards_and_index_are_transformers(framework, class_name, tiny_checkpoints, tmp_path):
    golden = GOLDEN["save"][class_name]
    weights = seeded_weights(class_name)
    assert weights_hash(weights) == golden["weights_sha256"]  # the golden model held these very weights
    model = model_class(framework, class_name).from_pretrained(tiny_checkpoints[class_name])
    model.save_pretrained(tmp_path, max_shard_size=SHARD_BYTES)
    assert files(tmp_path) == golden["safetensors"]["files"]
    index = (tmp_path / "model.safetensors.index.json").read_text()
    assert index == golden["safetensors"]["indexes"]["model.safetensors.index.json"]  # byte for byte
    weight_map = json.loads(index)["weight_map"]
    for shard in set(weight_map.values()):  # each shard holds exactly what the index says
        source = open_file(tmp_path / shard)
        assert sorted(source.keys()) == sorted(name for name, where in weight_map.items() if where == shard)
        source.close()
    assert_same(saved(tmp_path), {name: weights[name] for name in weight_map})
    again = model_class(framework, class_name).from_pretrained(tmp_path)
    assert again.num_parameters() == model.num_parameters() == golden["num_parameters"]


@pytest.mark.parametrize("class_name", MODEL_CLASSES)
def test_bin_variant_shards_are_transformers_and_load_in_both_frameworks(class_name, tiny_checkpoints, tmp_path):
    golden = GOLDEN["save"][class_name]
    weights = seeded_weights(class_name)
    model = blip_torch.__dict__[class_name].from_pretrained(tiny_checkpoints[class_name])
    model.save_pretrained(tmp_path, max_shard_size=SHARD_BYTES, safe_serialization=False, variant="fp16")
    assert files(tmp_path) == golden["bin_fp16"]["files"]
    for name, text in golden["bin_fp16"]["indexes"].items():
        assert (tmp_path / name).read_text() == text  # tied aliases listed, in their source's shard, as torch.save
    assert_same(saved(tmp_path, variant="fp16"), weights)  # tied aliases included, as transformers' .bin
    tf_model = blip_tf.__dict__["TF" + class_name].from_pretrained(tmp_path, variant="fp16", use_safetensors=False)
    tf_model.save_pretrained(tmp_path / "back")
    assert_same(saved(tmp_path / "back"), saved(tiny_checkpoints[class_name]))
    model.save_pretrained(tmp_path / "single", variant="fp16")
    assert files(tmp_path / "single") == golden["single_variant"]


def test_tf_h5_shards_are_the_tf_ports(tmp_path):
    """The TF port's own sharded tf_model.h5 (60KB), loaded and saved again: the same index, the same shards."""
    model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(TF_SHARDED_H5)
    model.save_pretrained(tmp_path, safe_serialization=False, max_shard_size="60KB")
    assert files(tmp_path) == sorted(["config.json", "generation_config.json", *files(TF_SHARDED_H5)[1:]])
    ours, theirs = (json.loads((folder / "tf_model.h5.index.json").read_text()) for folder in (tmp_path, TF_SHARDED_H5))
    assert ours == theirs
    for shard in sorted(set(theirs["weight_map"].values())):
        with h5py.File(tmp_path / shard) as mine, h5py.File(TF_SHARDED_H5 / shard) as port:
            names = [name.decode() if isinstance(name, bytes) else name for name in port.attrs["layer_names"]]
            assert [name.decode() for name in mine.attrs["layer_names"]] == names
            for name in names:
                assert np.array_equal(mine[name][()], port[name][()]), name
    assert_same(saved(tmp_path), saved(TF_SHARDED_H5))
    torch_model = blip_torch.BlipForConditionalGeneration.from_pretrained(tmp_path)
    assert torch_model.untied_names() == model.untied_names() == {"text_decoder.cls.predictions.decoder.weight"}


@pytest.mark.parametrize(
    "writer, options",
    [
        ("pt", {"max_shard_size": "20KB"}),
        ("pt", {"safe_serialization": False}),
        ("pt", {"safe_serialization": False, "max_shard_size": 20_000, "variant": "v2"}),
        ("tf", {"max_shard_size": "20KB", "variant": "v2"}),
        ("tf", {"safe_serialization": False}),
        ("tf", {"safe_serialization": False, "max_shard_size": "20KB"}),
    ],
)
@pytest.mark.parametrize("class_name", ["BlipForQuestionAnswering", "BlipModel"])
def test_round_trips_bit_exact_within_and_across_frameworks(writer, options, class_name, tiny_checkpoints, tmp_path):
    reference = saved(tiny_checkpoints[class_name])
    model_class(writer, class_name).from_pretrained(tiny_checkpoints[class_name]).save_pretrained(tmp_path, **options)
    load = {"variant": options["variant"]} if "variant" in options else {}
    for reader in ("pt", "tf"):
        model = model_class(reader, class_name).from_pretrained(tmp_path, **load)
        model.save_pretrained(tmp_path / f"by_{reader}")
        assert_same(saved(tmp_path / f"by_{reader}"), reference)


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_bfloat16_survives_every_format(framework, tiny_checkpoints, tmp_path):
    folder = tiny_checkpoints[CAPTION]
    model = model_class(framework).from_pretrained(folder, dtype="bfloat16")
    expected = seeded_weights(CAPTION)  # tied aliases too: pytorch_model.bin and tf_model.h5 hold the decoder
    for name, options in (("st", {"max_shard_size": "30KB"}), ("other", {"safe_serialization": False})):
        model.save_pretrained(tmp_path / name, **options)
        again = model_class(framework).from_pretrained(tmp_path / name, dtype="auto")
        assert str(again.dtype).endswith("bfloat16")
        for tensor_name, value in saved(tmp_path / name).items():
            rounded = torch.from_numpy(expected[tensor_name]).to(torch.bfloat16).float().numpy()
            assert np.array_equal(value, rounded), tensor_name


def _second_weights(tmp_path_factory):
    return write_tiny_checkpoint(CAPTION, tmp_path_factory.mktemp("seed1") / CAPTION, seed=1)


# golden case -> (first save's options, second save's options, files left here by the torch tree)
CLEANUP = {
    "safetensors then bin": ({}, {"safe_serialization": False}, ["pytorch_model.bin"]),
    "shards then single": ({"max_shard_size": SHARD_BYTES}, {}, ["model.safetensors"]),
    "single then shards": (
        {},
        {"max_shard_size": SHARD_BYTES},
        ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"]
        + ["model.safetensors.index.json"],
    ),
    "bin then safetensors": ({"safe_serialization": False}, {}, ["model.safetensors", "pytorch_model.bin"]),
}


@pytest.mark.parametrize("case", sorted(CLEANUP))
@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_a_second_save_is_what_loads(case, framework, tiny_checkpoints, tmp_path, tmp_path_factory):
    """transformers leaves an older model.safetensors beside new shards or a new .bin, and then loads the
    old weights (recorded: loads_second_save false); here the files that would shadow the new ones go."""
    first_options, second_options, left = CLEANUP[case]
    first = model_class(framework).from_pretrained(tiny_checkpoints[CAPTION])
    second = model_class(framework).from_pretrained(_second_weights(tmp_path_factory))
    (tmp_path / "notes.txt").write_text("kept")
    first.save_pretrained(tmp_path, **first_options)
    second.save_pretrained(tmp_path, **second_options)
    if framework == "tf":  # the TF tree's safe_serialization=False is tf_model.h5
        left = sorted(name.replace("pytorch_model.bin", "tf_model.h5") for name in left)
    assert files(tmp_path) == sorted(["config.json", "generation_config.json", "notes.txt", *left])
    again = model_class(framework).from_pretrained(tmp_path)
    again.save_pretrained(tmp_path / "check")
    second.save_pretrained(tmp_path / "expected")
    assert_same(saved(tmp_path / "check"), saved(tmp_path / "expected"))
    golden = GOLDEN["cleanup"][case]
    assert golden["loads_second_save"] is (case in ("shards then single", "bin then safetensors"))


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_other_main_process_writes_nothing_and_offline_push_to_hub_is_refused(framework, tiny_checkpoints, tmp_path):
    model = model_class(framework).from_pretrained(tiny_checkpoints[CAPTION])
    model.save_pretrained(tmp_path / "none", is_main_process=False)
    assert not (tmp_path / "none").exists()  # transformers still writes the weights there (golden)
    assert GOLDEN["cleanup"]["not main process"]["files"] == ["model.safetensors"]
    with pytest.raises(OSError, match="cannot push .*BlipForConditionalGeneration to 'me/model': HF_HUB_OFFLINE"):
        model.save_pretrained(tmp_path / "hub", push_to_hub=True, repo_id="me/model")  # uploads: test_push_to_hub
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['max_shard'\]"):
        model.save_pretrained(tmp_path / "typo", max_shard="1GB")
    with pytest.raises(ValueError, match="max_shard_size='big'"):
        model.save_pretrained(tmp_path / "bad", max_shard_size="big")
    assert not (tmp_path / "hub").exists() and not (tmp_path / "typo").exists() and not (tmp_path / "bad").exists()
    model.save_pretrained(tmp_path / "ok", token="t", commit_message="ignored without push_to_hub", use_auth_token="t")
    assert files(tmp_path / "ok") == ["config.json", "generation_config.json", "model.safetensors"]


def test_torch_state_dict_and_save_function_are_honoured(tiny_checkpoints, tmp_path):
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(tiny_checkpoints[CAPTION])
    part = dict(list(model.state_dict().items())[:3])
    model.save_pretrained(tmp_path / "part", state_dict=part)
    assert_same(saved(tmp_path / "part"), {name: value.numpy() for name, value in part.items()})
    calls = []

    def recording_save(obj, path):
        calls.append(sorted(obj))
        torch.save(obj, path)

    model.save_pretrained(
        tmp_path / "bin", safe_serialization=False, max_shard_size=SHARD_BYTES, save_function=recording_save
    )
    assert len(calls) == 3 and sum(len(names) for names in calls) == len(saved(tmp_path / "bin"))
    model.save_pretrained(tmp_path / "st", save_function=recording_save)  # unused for safetensors, as transformers
    assert len(calls) == 3


def test_tf_refuses_what_it_cannot_honour(tiny_checkpoints, tmp_path):
    model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(tiny_checkpoints[CAPTION])
    with pytest.raises(ValueError, match="state_dict= is not supported in TensorFlow"):
        model.save_pretrained(tmp_path, state_dict={})
    with pytest.raises(ValueError, match="export_for_serving"):
        model.save_pretrained(tmp_path, saved_model=True)
    assert not tmp_path.joinpath("config.json").exists()


def test_a_failed_write_leaves_the_previous_files(tiny_checkpoints, tmp_path):
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(tiny_checkpoints[CAPTION])
    model.save_pretrained(tmp_path, safe_serialization=False)
    before = (tmp_path / "pytorch_model.bin").read_bytes()

    def failing_save(obj, path):
        with open(path, "wb") as stream:
            stream.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path, safe_serialization=False, save_function=failing_save)
    assert (tmp_path / "pytorch_model.bin").read_bytes() == before
    assert files(tmp_path) == ["config.json", "generation_config.json", "pytorch_model.bin"]  # no temporary file
