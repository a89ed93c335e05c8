"""blip_torch loading and saving: files written by `transformers` (safetensors, .bin, the TF port's h5),
round trips, ties, dtypes, and the errors a user sees."""

from __future__ import annotations

import json

import pytest
import torch

import blip_torch
from blip_core.checkpoints.safetensors_io import SafetensorsFile
from blip_core.weights import CheckpointError
from blip_core.weights.names import MODEL_CLASSES
from tests.helpers.compare import assert_outputs_close
from tests.helpers.golden import FIXTURES, load_npz
from tests.helpers.model_cases import FORWARD_CASES

GOLDEN = load_npz("models.npz")
HF = FIXTURES / "hf_checkpoints"
CASES = {case.name: case for case in FORWARD_CASES}


def run_case(model, name):
    case = CASES[name]
    inputs = {arg: torch.from_numpy(GOLDEN[f"input::{key}"].copy()) for arg, key in case.inputs.items()}
    with torch.no_grad():
        return getattr(model, case.method)(**inputs, **case.kwargs)


def golden(name):
    return {k.split("::", 1)[1]: v for k, v in GOLDEN.items() if k.startswith(f"{name}::")}


@pytest.mark.parametrize(
    "folder,class_name,case",
    [
        ("caption_safetensors", "BlipForConditionalGeneration", "caption"),
        ("caption_bin", "BlipForConditionalGeneration", "caption"),
        ("vqa_safetensors", "BlipForQuestionAnswering", "vqa"),
        ("itm_bin", "BlipForImageTextRetrieval", "itm"),
        ("vision_safetensors", "BlipVisionModel", "vision"),
    ],
)
def test_checkpoints_written_by_transformers(folder, class_name, case):
    model = getattr(blip_torch, class_name).from_pretrained(HF / folder)
    assert_outputs_close(run_case(model, case), golden(case))


def test_tf_port_h5_reproduces_the_tf_port(tmp_path):
    """The TF port's tf_model.h5 holds its own (random) decoder; it is kept, not replaced by the embeddings."""
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(HF / "caption_tf")
    assert "text_decoder.cls.predictions.decoder.weight" in model.untied_names()
    tf_port = load_npz("tf_port_caption.npz")
    ids = torch.from_numpy(GOLDEN["input::input_ids_full"])
    with torch.no_grad():
        out = model(pixel_values=torch.from_numpy(GOLDEN["input::pixel_values"]), input_ids=ids)
    assert_outputs_close({"logits": out.logits, "image_embeds": out.image_embeds}, tf_port)
    model.save_pretrained(tmp_path)  # an untied decoder is saved, so it survives the round trip
    assert "text_decoder.cls.predictions.decoder.weight" in SafetensorsFile(tmp_path / "model.safetensors").keys()
    again = blip_torch.BlipForConditionalGeneration.from_pretrained(tmp_path)
    assert torch.equal(
        again.text_decoder.cls.predictions.decoder.weight, model.text_decoder.cls.predictions.decoder.weight
    )


def test_vision_model_from_a_captioning_checkpoint():
    vision = blip_torch.BlipVisionModel.from_pretrained(HF / "caption_safetensors")
    full = blip_torch.BlipForConditionalGeneration.from_pretrained(HF / "caption_safetensors")
    pixels = torch.from_numpy(GOLDEN["input::pixel_values"])
    with torch.no_grad():
        assert torch.equal(vision(pixels).last_hidden_state, full.vision_model(pixels).last_hidden_state)


@pytest.mark.parametrize("class_name", MODEL_CLASSES)
def test_save_load_round_trip_is_exact(tiny_checkpoints, tmp_path, class_name):
    model = getattr(blip_torch, class_name).from_pretrained(tiny_checkpoints[class_name])
    model.save_pretrained(tmp_path)
    saved = SafetensorsFile(tmp_path / "model.safetensors").keys()
    assert "text_decoder.cls.predictions.decoder.weight" not in saved  # tied: omitted as transformers does
    again = getattr(blip_torch, class_name).from_pretrained(tmp_path)
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == [class_name] and config["dtype"] == "float32"


def test_tied_weights_share_one_parameter(tiny_checkpoints):
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(tiny_checkpoints["BlipForConditionalGeneration"])
    head = model.text_decoder.cls.predictions
    assert head.decoder.weight is model.text_decoder.bert.embeddings.word_embeddings.weight
    assert head.decoder.bias is head.bias


def test_dtype_and_device_options(tiny_checkpoints, tmp_path):
    folder = tiny_checkpoints["BlipForConditionalGeneration"]
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(
        folder, torch_dtype=torch.bfloat16, device_map="auto"
    )
    assert model.dtype == torch.bfloat16 and model.device.type in ("cpu", "cuda")
    model.save_pretrained(tmp_path)
    source = SafetensorsFile(tmp_path / "model.safetensors")
    assert source.dtype("vision_model.post_layernorm.weight") == "BF16"
    again = blip_torch.BlipForConditionalGeneration.from_pretrained(tmp_path, torch_dtype="auto")
    assert again.dtype == torch.bfloat16
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), again.state_dict().values(), strict=True))
    assert blip_torch.BlipForConditionalGeneration.from_pretrained(folder, dtype="float16").dtype == torch.float16
    with pytest.raises(ValueError, match="torch_dtype must be a floating"):
        blip_torch.BlipForConditionalGeneration.from_pretrained(folder, torch_dtype=torch.int8)


def test_bf16_smoke(tiny_checkpoints):
    folder = tiny_checkpoints["BlipForConditionalGeneration"]
    fp32 = blip_torch.BlipForConditionalGeneration.from_pretrained(folder)
    bf16 = blip_torch.BlipForConditionalGeneration.from_pretrained(folder, torch_dtype=torch.bfloat16)
    pixels = torch.from_numpy(GOLDEN["input::pixel_values"])
    ids = torch.from_numpy(GOLDEN["input::input_ids_full"])
    with torch.no_grad():
        a = fp32(pixel_values=pixels, input_ids=ids).logits
        b = bf16(pixel_values=pixels.bfloat16(), input_ids=ids).logits
    assert b.dtype == torch.bfloat16 and torch.isfinite(b.float()).all()
    assert (a - b.float()).abs().max() < 0.1 * a.abs().max()
    assert bf16.generate(pixels.bfloat16(), num_beams=2, max_new_tokens=5).shape[0] == 2


def test_wrong_class_names_every_problem_and_the_right_class():
    with pytest.raises(CheckpointError) as info:
        blip_torch.BlipForImageTextRetrieval.from_pretrained(HF / "caption_safetensors")
    message = str(info.value)
    assert "missing (" in message and "itm_head.weight" in message and "unexpected (" in message
    assert "config.json says the checkpoint is a BlipForConditionalGeneration" in message


def test_missing_folder_and_missing_weights(tmp_path):
    with pytest.raises(OSError, match="config.json not found"):
        blip_torch.BlipModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "blip"}))
    with pytest.raises(OSError, match="no weights found"):
        blip_torch.BlipModel.from_pretrained(tmp_path)


def test_truncated_weights_are_named(tmp_path, tiny_checkpoints):
    source = tiny_checkpoints["BlipForConditionalGeneration"]
    for name in ("config.json", "model.safetensors"):
        data = (source / name).read_bytes()
        (tmp_path / name).write_bytes(data if name == "config.json" else data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors is truncated"):
        blip_torch.BlipForConditionalGeneration.from_pretrained(tmp_path)


def test_config_overrides_through_from_pretrained(tiny_checkpoints):
    model = blip_torch.BlipTextModel.from_pretrained(tiny_checkpoints["BlipTextModel"], output_hidden_states=True)
    assert model.config.output_hidden_states is True
    assert len(model(torch.tensor([[5, 6, 7]])).hidden_states) == model.config.num_hidden_layers + 1
