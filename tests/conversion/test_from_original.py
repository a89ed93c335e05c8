"""`from-original`: synthetic original checkpoints for each task and two ViT sizes convert exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import blip_torch
from blip_conversion import convert
from blip_conversion.formats.original import resize_position_table
from tests.helpers.original import original_state, save_original
from tests.helpers.tiny import seeded_weights, tiny_config

# Two tiny ViT sizes standing for ViT-B and ViT-L: different widths, depths and head counts.
VITS = {
    "base": {"text_config": {"hidden_size": 24}, "vision_config": {"hidden_size": 24, "num_attention_heads": 3}},
    "large": {
        "text_config": {"hidden_size": 24},
        "vision_config": {"hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 3},
    },
}
TASKS = {
    "caption": "BlipForConditionalGeneration",
    "vqa": "BlipForQuestionAnswering",
    "itm": "BlipForImageTextRetrieval",
}


def config_file(tmp_path, vit):
    config = tiny_config(**VITS[vit])
    if vit == "large":
        config.text_config.hidden_size = 32  # VQA needs text width == vision width
    path = tmp_path / f"{vit}_config.json"
    config.save_pretrained(tmp_path)
    (tmp_path / "config.json").rename(path)
    return path, config


@pytest.mark.parametrize("vit", sorted(VITS))
@pytest.mark.parametrize("task", sorted(TASKS))
def test_original_converts_exactly(tmp_path, task, vit):
    path, config = config_file(tmp_path, vit)
    class_name = TASKS[task]
    weights = seeded_weights(class_name, config, seed=3)
    save_original(
        tmp_path / "model.pth", original_state(weights, momentum=task == "itm", extra_text_tower=task == "caption")
    )
    folder, report = convert.from_original(
        str(tmp_path / "model.pth"), task, str(tmp_path / "out"), vit, 40, config_path=str(path)
    )
    assert report["class"] == class_name and report["resized_from"] is None
    if task == "itm":
        assert report["dropped training-only"] > 10  # momentum encoders, queues, temp
    model = getattr(blip_torch, class_name).from_pretrained(folder)
    state = model.state_dict()
    assert set(weights) <= set(state)
    for name, value in weights.items():
        assert np.array_equal(state[name].numpy(), value), name
    saved = json.loads((folder / "config.json").read_text())
    assert saved["architectures"] == [class_name] and saved["text_config"]["num_attention_heads"] == 4
    # the original decoder's hard-coded label smoothing, not the Hub configs' 0.0
    assert saved["text_config"]["label_smoothing"] == 0.1
    assert {p.name for p in folder.iterdir()} >= {
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
        "vocab.txt",
    }


def test_position_table_resized_like_torch_bicubic(tmp_path):
    path, config = config_file(tmp_path, "base")
    weights = seeded_weights("BlipForQuestionAnswering", config, seed=5)
    trained = np.random.RandomState(1).randn(1, 7 * 7 + 1, 24).astype(np.float32)  # trained at 56 px (7x7 patches)
    weights["vision_model.embeddings.position_embedding"] = trained
    save_original(tmp_path / "vqa.pth", original_state(weights))
    folder, report = convert.from_original(
        str(tmp_path / "vqa.pth"), "vqa", str(tmp_path / "out"), "base", 40, config_path=str(path)
    )
    assert report["resized_from"] == 56
    converted = blip_torch.BlipForQuestionAnswering.from_pretrained(folder).vision_model.embeddings.position_embedding
    grid = torch.from_numpy(trained[:, 1:]).reshape(1, 7, 7, 24).permute(0, 3, 1, 2)  # independent: torch's own bicubic
    expected = torch.nn.functional.interpolate(grid, size=(5, 5), mode="bicubic", align_corners=False)
    expected = torch.cat([torch.from_numpy(trained[:, :1]), expected.permute(0, 2, 3, 1).reshape(1, 25, 24)], dim=1)
    assert converted.shape == (1, 26, 24)
    assert torch.allclose(converted.detach(), expected, atol=1e-5)
    assert np.array_equal(resize_position_table(trained, 7), trained)  # same grid: untouched


def test_standard_configs_have_hub_sizes():
    from blip_conversion.formats.original import original_config

    large = original_config("caption", "large", 384)
    assert (
        large.vision_config.hidden_size,
        large.vision_config.num_hidden_layers,
        large.vision_config.num_attention_heads,
    ) == (1024, 24, 16)
    assert large.text_config.encoder_hidden_size == 1024 and large.text_config.num_attention_heads == 12
    base = original_config("vqa", "base", 384)
    assert base.vision_config.hidden_size == 768 and base.architectures == ["BlipForQuestionAnswering"]
    assert base.text_config.label_smoothing == large.text_config.label_smoothing == 0.1
