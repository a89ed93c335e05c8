"""blip_torch parameters as copy-on-write views of `model.safetensors` (issue 17: memory).

Where the file holds the requested dtype, every parameter lives in a private mapping of the file
(no second copy of the weights); elsewhere it is converted into its own memory. Values equal the
file's exactly; writes to parameters never reach the file; saving over the mapped file works.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import blip_torch
from blip_core.checkpoints.safetensors_io import SafetensorsFile
from tests.helpers.checkpoints import write_tiny_checkpoint

CLASS = "BlipForConditionalGeneration"
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")


def mapped_file(tensor: torch.Tensor) -> str | None:
    """The file whose mapping holds `tensor`'s memory (None: anonymous memory)."""
    address = tensor.data_ptr()
    with open("/proc/self/maps", encoding="utf-8") as stream:
        for line in stream:
            fields = line.split(maxsplit=5)
            low, high = (int(part, 16) for part in fields[0].split("-"))
            if low <= address < high:
                return fields[5].strip() if len(fields) == 6 and fields[5].startswith("/") else None
    return None


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return write_tiny_checkpoint(CLASS, tmp_path / "tiny")


def load(folder: Path, dtype: torch.dtype = torch.float32):
    return getattr(blip_torch, CLASS).from_pretrained(folder, torch_dtype=dtype)


def test_float32_parameters_are_views_of_the_file_with_its_exact_values(checkpoint):
    model = load(checkpoint)
    file = SafetensorsFile(checkpoint / "model.safetensors")
    parameters = dict(model.named_parameters())
    assert len(parameters) > 20
    for name, parameter in parameters.items():
        assert mapped_file(parameter) == str((checkpoint / "model.safetensors").resolve()), name
        if name in file.keys():
            assert np.array_equal(parameter.detach().numpy(), file.get(name)), name
    tied = model.text_decoder.cls.predictions.decoder.weight
    assert tied is model.text_decoder.bert.embeddings.word_embeddings.weight  # ties still share one tensor


def test_converted_dtypes_get_their_own_memory(checkpoint):
    reference = dict(load(checkpoint).named_parameters())
    model = load(checkpoint, torch.bfloat16)
    for name, parameter in model.named_parameters():
        assert parameter.dtype == torch.bfloat16 and mapped_file(parameter) is None, name
        assert torch.equal(parameter, reference[name].detach().to(torch.bfloat16)), name


def test_a_bfloat16_file_is_mapped_for_bfloat16(checkpoint, tmp_path):
    load(checkpoint, torch.bfloat16).save_pretrained(tmp_path / "bf16")
    assert (
        SafetensorsFile(tmp_path / "bf16" / "model.safetensors").dtype("vision_model.post_layernorm.weight") == "BF16"
    )
    reference = dict(load(checkpoint).named_parameters())
    model = load(tmp_path / "bf16", torch.bfloat16)
    for name, parameter in model.named_parameters():
        assert mapped_file(parameter) == str((tmp_path / "bf16" / "model.safetensors").resolve()), name
        assert torch.equal(parameter, reference[name].detach().to(torch.bfloat16)), name
    widened = load(tmp_path / "bf16")  # float32 from a bf16 file: widened into its own memory
    assert all(mapped_file(p) is None and p.dtype == torch.float32 for p in widened.parameters())


def test_writes_to_parameters_never_reach_the_file(checkpoint):
    path = checkpoint / "model.safetensors"
    before = path.read_bytes()
    model = load(checkpoint)
    weight = model.vision_model.post_layernorm.weight
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    stored = torch.from_numpy(SafetensorsFile(path).get("vision_model.post_layernorm.weight"))
    assert torch.equal(weight.detach(), stored + 1.0)  # one float32 addition: exact on every CPU
    assert path.read_bytes() == before
    fresh = load(checkpoint)
    assert torch.equal(fresh.vision_model.post_layernorm.weight + 1.0, weight)


def test_training_steps_on_mapped_parameters_leave_the_file_alone(checkpoint):
    path = checkpoint / "model.safetensors"
    before = path.read_bytes()
    model = load(checkpoint).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    size = model.config.vision_config.image_size
    pixels = torch.from_numpy(np.random.RandomState(0).randn(2, 3, size, size).astype(np.float32))
    ids = torch.tensor([[1, 5, 6, 2], [1, 7, 8, 2]])
    loss = model(pixel_values=pixels, input_ids=ids, labels=ids).loss
    loss.backward()
    weight = model.vision_model.post_layernorm.weight
    expected = (weight - 0.1 * weight.grad).detach()
    optimizer.step()
    assert torch.allclose(weight.detach(), expected, rtol=0, atol=1e-6) and not torch.equal(
        weight.grad, 0 * weight.grad
    )
    assert path.read_bytes() == before


def test_saving_over_the_mapped_file_works(checkpoint):
    model = load(checkpoint)
    with torch.no_grad():
        model.vision_model.post_layernorm.weight.mul_(3.0)
    expected = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.save_pretrained(checkpoint)  # replaces the file this model's parameters map
    for name, parameter in model.named_parameters():  # the old mapping still holds this model's values
        assert torch.equal(parameter, expected[name]), name
    reloaded = load(checkpoint)
    for name, parameter in reloaded.named_parameters():
        assert torch.equal(parameter, expected[name]), name
    model.save_pretrained(checkpoint)  # and again, from a model whose file was replaced under it
    assert torch.equal(
        load(checkpoint).vision_model.post_layernorm.weight, expected["vision_model.post_layernorm.weight"]
    )
