"""Format conversions: lossless round trips, the TF port's h5, shards, processor files, Keras export."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import blip_torch
from blip_conversion import convert
from blip_core.checkpoints.sources import open_file, open_weights
from blip_core.io.hub import resolve_weights
from blip_core.weights import MODEL_CLASSES
from tests.helpers.checkpoints import write_generation_checkpoint
from tests.helpers.compare import assert_outputs_close
from tests.helpers.golden import FIXTURES, load_npz
from tests.helpers.tiny import seeded_weights

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
        "generation_config.json",
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


# -- every weights file the project writes is read back by both frameworks and by to-safetensors -----------

CAPTION = "BlipForConditionalGeneration"


def _copy_config(source, destination):
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "config.json", destination / "config.json")


def _tf_model(source, class_name=CAPTION, **options):
    import blip_tf

    return getattr(blip_tf, "TF" + class_name).from_pretrained(source, **options)


def _tf_save_weights(source, destination, shard_gb=None):
    _copy_config(source, destination)
    name = "model.weights.h5" if shard_gb is None else "model.weights.json"
    _tf_model(source).save_weights(str(destination / name), max_shard_size=shard_gb)


def _torch_state_dict_bin(source, destination):
    import torch

    _copy_config(source, destination)
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(source)
    torch.save(model.state_dict(), destination / "pytorch_model.bin")


# writer -> how it makes `destination` from the canonical checkpoint `source` (the captioner: tied LM head).
WRITERS = {
    "blip-convert to-safetensors": lambda src, dst: convert.to_safetensors(str(src), str(dst)),
    "blip-convert to-bin": lambda src, dst: convert.to_bin(str(src), str(dst)),
    "blip-convert to-h5": lambda src, dst: convert.to_h5(str(src), str(dst)),
    "blip-convert to-keras": lambda src, dst: convert.to_keras(str(src), str(dst)),
    "torch save_pretrained": lambda src, dst: blip_torch.BlipForConditionalGeneration.from_pretrained(
        src
    ).save_pretrained(dst),
    "tf save_pretrained": lambda src, dst: _tf_model(src).save_pretrained(dst),
    "tf save_weights": lambda src, dst: _tf_save_weights(src, dst),
    "tf save_weights sharded": lambda src, dst: _tf_save_weights(src, dst, shard_gb=0.00005),
    "torch.save(state_dict)": _torch_state_dict_bin,
}


def assert_reads_back_everywhere(folder, expected, tmp_path, class_name=CAPTION):
    """`folder` loads bit-exact in blip_torch and blip_tf (saved again: canonical tensors) and to-safetensors."""
    torch_model = getattr(blip_torch, class_name).from_pretrained(folder)
    torch_model.save_pretrained(tmp_path / "torch_again")
    assert_same(tensors(tmp_path / "torch_again" / "model.safetensors"), expected)
    _tf_model(folder, class_name).save_pretrained(tmp_path / "tf_again")
    assert_same(tensors(tmp_path / "tf_again" / "model.safetensors"), expected)
    convert.to_safetensors(str(folder), str(tmp_path / "converted"))
    assert_same(tensors(tmp_path / "converted" / "model.safetensors"), expected)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_every_written_format_reads_back_bit_exact(writer, tmp_path, tiny_checkpoints):
    source = tiny_checkpoints[CAPTION]
    WRITERS[writer](source, tmp_path / "written")
    assert_reads_back_everywhere(tmp_path / "written", tensors(source / "model.safetensors"), tmp_path)


@pytest.mark.parametrize("class_name", MODEL_CLASSES)
def test_to_keras_output_loads_in_both_frameworks_for_every_class(class_name, tmp_path, tiny_checkpoints):
    """The issue's failure: `blip-convert to-keras SRC DST`, then from_pretrained(DST) / to-safetensors DST."""
    source = tiny_checkpoints[class_name]
    convert.to_keras(str(source), str(tmp_path / "keras"))
    assert {"config.json", "model.weights.h5"} <= {p.name for p in (tmp_path / "keras").iterdir()}
    assert_reads_back_everywhere(tmp_path / "keras", tensors(source / "model.safetensors"), tmp_path, class_name)


def test_untied_lm_head_survives_keras_weights(tmp_path):
    """A fine-tune whose decoder differs from the embeddings keeps its own decoder through model.weights.h5."""
    source = write_generation_checkpoint(CAPTION, "varied", tmp_path / "untied")
    expected = tensors(source / "model.safetensors")
    assert "text_decoder.cls.predictions.decoder.weight" in expected
    _tf_save_weights(source, tmp_path / "written")
    assert_reads_back_everywhere(tmp_path / "written", expected, tmp_path)


def test_bfloat16_keras_weights_read_exactly(tmp_path, tiny_checkpoints):
    model = _tf_model(tiny_checkpoints[CAPTION], dtype="bfloat16")
    model.save_pretrained(tmp_path / "pretrained")  # bfloat16 safetensors
    model.save_weights(str(tmp_path / "bf16.weights.h5"))
    from_keras_file = tensors(tmp_path / "bf16.weights.h5")
    assert_same(from_keras_file, tensors(tmp_path / "pretrained" / "model.safetensors"))  # widened exactly
    rounded = from_keras_file["vision_model.post_layernorm.weight"]
    assert not np.array_equal(
        rounded, tensors(tiny_checkpoints[CAPTION] / "model.safetensors")["vision_model.post_layernorm.weight"]
    )  # the values really are bfloat16-rounded: the test would see a float32 file


# -- files written by transformers' TF port (tests/tools/make_tf_format_fixtures.py) -------------------------

TF_PORT_FIXTURES = {  # folder -> (class, golden key of its decoder kernel, format resolved, number of files)
    "caption_tf_safetensors": (CAPTION, "caption", "safetensors", 1),
    "caption_tf_sharded_h5": (CAPTION, "caption", "h5", 3),
    "vqa_tf_sharded_safetensors": ("BlipForQuestionAnswering", "vqa", "safetensors", 3),
    "blip_model_tf_h5": ("BlipModel", None, "h5", 1),
}
DECODER = "text_decoder.cls.predictions.decoder.weight"


def source_tensors(folder):
    source = open_weights(resolve_weights(folder))
    try:
        return {name: source.get(name) for name in source.keys()}
    finally:
        source.close()


@pytest.mark.parametrize("folder", sorted(TF_PORT_FIXTURES))
def test_transformers_tf_port_files_read_bit_exact(folder):
    class_name, key, fmt, count = TF_PORT_FIXTURES[folder]
    files = resolve_weights(HF / folder)
    assert (files.format, len(files.paths)) == (fmt, count)
    got = source_tensors(HF / folder)
    seeded = seeded_weights(class_name)  # what transformers' PyTorch model held before the TF port converted it
    tied_bias = {name for name in seeded if name.endswith("decoder.bias")}  # the port adds predictions.bias itself
    assert sorted(got) == sorted(set(seeded) - tied_bias)
    for name, value in got.items():
        if name != DECODER:
            assert value.dtype == seeded[name].dtype and np.array_equal(value, seeded[name]), name
    if key is not None:  # the port's own (random) decoder, as its model held it, in torch layout
        assert np.array_equal(got[DECODER], load_npz("tf_formats.npz")[f"{key}::decoder_kernel"].T)


def test_transformers_tf_safetensors_metadata_and_names():
    from safetensors import safe_open

    with safe_open(str(HF / "caption_tf_safetensors" / "model.safetensors"), "np") as handle:
        assert handle.metadata() == {"format": "tf"}
        assert "text_decoder/bert/embeddings/LayerNorm/beta:0" in handle.keys()


@pytest.mark.parametrize("folder", sorted(TF_PORT_FIXTURES))
def test_transformers_tf_port_files_convert_bit_exact(folder, tmp_path):
    convert.to_safetensors(str(HF / folder), str(tmp_path / "out"))
    assert_same(tensors(tmp_path / "out" / "model.safetensors"), source_tensors(HF / folder))


def test_tf_port_safetensors_give_the_ports_outputs_in_both_frameworks():
    """The TF port's logits after loading its own TF-named safetensors, from blip_torch and blip_tf."""
    import torch

    import blip_tf

    golden = load_npz("tf_formats.npz")
    pixels, ids = golden["input::pixel_values"], golden["input::input_ids_full"]
    torch_model = blip_torch.BlipForConditionalGeneration.from_pretrained(HF / "caption_tf_safetensors")
    with torch.no_grad():
        torch_logits = torch_model(pixel_values=torch.from_numpy(pixels), input_ids=torch.from_numpy(ids)).logits
    tf_model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(HF / "caption_tf_safetensors")
    tf_logits = tf_model(pixel_values=pixels, input_ids=ids).logits.numpy()
    assert_outputs_close({"v": torch_logits.numpy()}, {"v": golden["caption::logits"]})
    assert_outputs_close({"v": tf_logits}, {"v": golden["caption::logits"]})


def test_tf_port_blip_model_h5_gives_the_ports_outputs_in_both_frameworks():
    import torch

    import blip_tf

    golden = load_npz("tf_formats.npz")
    inputs = {key: golden[f"input::{key}"] for key in ("pixel_values", "input_ids", "attention_mask")}
    with torch.no_grad():
        torch_out = blip_torch.BlipModel.from_pretrained(HF / "blip_model_tf_h5")(
            **{key: torch.from_numpy(value) for key, value in inputs.items()}
        )
    tf_out = blip_tf.TFBlipModel.from_pretrained(HF / "blip_model_tf_h5")(**inputs)
    for field in ("logits_per_image", "text_embeds", "image_embeds"):
        assert_outputs_close({"v": getattr(torch_out, field).numpy()}, {"v": golden[f"blip_model::{field}"]})
        assert_outputs_close({"v": getattr(tf_out, field).numpy()}, {"v": golden[f"blip_model::{field}"]})


@pytest.mark.parametrize("command", ["to_safetensors", "to_bin", "to_h5", "to_keras"])
def test_conversions_keep_the_generation_settings_and_the_model_image_size(tmp_path, command):
    """A fine-tune's generation_config.json travels with it, and a source without processor files gets a
    processor at the model's own image size (40 here), whatever the target format."""
    source = write_generation_checkpoint("BlipForConditionalGeneration", "varied", tmp_path / "source")
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(source)
    model.generation_config.max_new_tokens = 4
    model.generation_config.num_beams = 2
    model.save_pretrained(source)
    getattr(convert, command)(str(source), str(tmp_path / "out"))
    out = tmp_path / "out"
    assert (out / "generation_config.json").read_bytes() == (source / "generation_config.json").read_bytes()
    assert json.loads((out / "preprocessor_config.json").read_text())["size"] == {"height": 40, "width": 40}
    loaded = blip_torch.BlipForConditionalGeneration.from_pretrained(out)
    assert (loaded.generation_config.max_new_tokens, loaded.generation_config.num_beams) == (4, 2)
