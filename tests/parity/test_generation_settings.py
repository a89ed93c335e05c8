"""Settings held by the model, empty batches and over-long prompts, through blip_torch and blip_tf.

`model.generation_config` (loaded from `generation_config.json`, else derived from the text config,
written by `save_pretrained`), checkpoints whose text config carries generation fields (golden:
`transformers` 4.57.6), and the errors both trees must give alike.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import blip_tf
import blip_torch
from blip_core import GenerationConfig
from blip_core.generation.rules import GenerationArgumentError
from tests.helpers.compare import to_numpy
from tests.helpers.generation_cases import (
    CAPTION,
    CHECKPOINT_CASES,
    FULL_DUMP_FIELDS,
    TOP_LEVEL_GENERATION_CONFIG,
    VQA,
    write_case_checkpoint,
)
from tests.helpers.generation_runs import INPUTS, checkpoint, load
from tests.helpers.golden import load_json, load_npz

GOLDEN = load_npz("generation.npz")
FACTS = load_json("generation.json")
FRAMEWORKS = ["pt", "tf"]
CLASSES = {"pt": blip_torch, "tf": blip_tf}


def model_class(framework: str, class_name: str):
    return getattr(CLASSES[framework], ("TF" if framework == "tf" else "") + class_name)


def pixels(framework: str, name: str = "pixel_values"):
    return torch.from_numpy(INPUTS[name].copy()) if framework == "pt" else INPUTS[name].copy()


@pytest.mark.parametrize(
    ("name", "framework"),
    [  # the rules are blip_core's: every checkpoint in PyTorch, the full-dump one in TF too (all: --run-slow)
        pytest.param(name, framework, marks=() if framework == "pt" or name == "full_dump" else pytest.mark.slow)
        for name in sorted(CHECKPOINT_CASES)
        for framework in FRAMEWORKS
    ],
)
def test_text_config_generation_fields_of_a_checkpoint(tmp_path, framework, name):
    """Full-dump configs (max_length 20 = 20 new tokens) and fine-tunes saved with num_beams/max_length."""
    folder = write_case_checkpoint(tmp_path / name, {**FULL_DUMP_FIELDS, **CHECKPOINT_CASES[name]})
    model = model_class(framework, CAPTION).from_pretrained(folder)
    ids = to_numpy(model.generate(pixels(framework)))
    assert np.array_equal(ids, GOLDEN[f"checkpoint_{name}::sequences"])


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_top_level_generation_config_json_is_used(tmp_path, framework):
    """A difference: `transformers`' BLIP ignores the model's own generation_config.json; we use it."""
    folder = write_case_checkpoint(tmp_path / "ck", {}, TOP_LEVEL_GENERATION_CONFIG)
    model = model_class(framework, CAPTION).from_pretrained(folder)
    assert model.generation_config.num_beams == 2 and model.generation_config is model.text_decoder.generation_config
    ours = to_numpy(model.generate(pixels(framework)))
    explicit = to_numpy(load(framework, CAPTION, "varied").generate(pixels(framework), **TOP_LEVEL_GENERATION_CONFIG))
    assert np.array_equal(ours, explicit)
    assert ours.shape != GOLDEN["checkpoint_top_level::sequences"].shape  # transformers: 20 greedy tokens


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("class_name", [CAPTION, VQA])
def test_save_pretrained_writes_the_generation_config(tmp_path, framework, class_name):
    model = model_class(framework, class_name).from_pretrained(checkpoint(class_name, "varied"))
    model.save_pretrained(tmp_path / "plain")
    key = "saved_generation_config" if class_name == CAPTION else "saved_vqa_generation_config"
    assert (tmp_path / "plain" / "generation_config.json").read_text() == FACTS[key]
    model.generation_config = GenerationConfig(max_new_tokens=4, num_beams=2)
    model.save_pretrained(tmp_path / "tuned")
    saved = json.loads((tmp_path / "tuned" / "generation_config.json").read_text())
    assert saved["max_new_tokens"] == 4 and "_from_model_config" not in saved
    again = model_class(framework, class_name).from_pretrained(tmp_path / "tuned")
    assert again.generation_config == model.generation_config


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_generation_config_argument_is_used_and_validated(framework):
    model = load(framework, CAPTION, "varied")
    out = model.generate(pixels(framework), generation_config=GenerationConfig(max_new_tokens=3))
    assert tuple(out.shape) == (2, 4)
    with pytest.raises(GenerationArgumentError, match="generation_config must be a GenerationConfig"):
        model.generate(pixels(framework), generation_config={"max_new_tokens": 3})
    assert model.can_generate() and not model_class(framework, "BlipModel").can_generate()


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("return_dict", [False, True])
def test_empty_batch_returns_empty_ids(framework, return_dict):
    captioner, answerer = load(framework, CAPTION, "varied"), load(framework, VQA, "eos")
    kwargs = {"return_dict_in_generate": return_dict, "output_scores": return_dict, "num_beams": 2}
    empty = pixels(framework)[:0]
    no_questions = INPUTS["input_ids"][:0]
    results = [
        captioner.generate(empty, **kwargs),
        answerer.generate(torch.from_numpy(no_questions) if framework == "pt" else no_questions, empty, **kwargs),
    ]
    for out in results:
        ids = out.sequences if return_dict else out
        assert tuple(ids.shape) == (0, 1)
        if return_dict:
            assert out.scores == () and tuple(out.sequences_scores.shape) == (0,)


def _error(model, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as caught:
        model.generate(*args, **kwargs)
    return str(caught.value)


def test_over_long_prompts_give_the_same_error_in_both_trees():
    long_prompt = np.array([[97] + [11] * 60 + [3]])  # 61 tokens with BOS, max_position_embeddings 48
    messages = {}
    for framework in FRAMEWORKS:
        model, image = load(framework, CAPTION, "varied"), pixels(framework, "pixel_values_1")
        prompt = torch.from_numpy(long_prompt) if framework == "pt" else long_prompt
        messages[framework] = (
            _error(model, image, input_ids=prompt),
            _error(model, image, input_ids=prompt[:, :6], max_length=5),
        )
    assert messages["pt"] == messages["tf"]
    assert "max_position_embeddings=48" in messages["pt"][0] and "max_length=5" in messages["pt"][1]


def test_over_long_questions_give_the_same_error_in_both_trees():
    question = np.full((1, 60), 11)
    messages = []
    for framework in FRAMEWORKS:
        model, image = load(framework, VQA, "eos"), pixels(framework, "pixel_values_1")
        messages.append(_error(model, torch.from_numpy(question) if framework == "pt" else question, image))
    assert messages[0] == messages[1] and "60 tokens" in messages[0] and "max_position_embeddings" in messages[0]


@pytest.mark.parametrize("option", [{"max_time": 5.0}, {"streamer": object()}])
def test_pytorch_only_options_are_refused_by_name_in_tf(option):
    with pytest.raises(GenerationArgumentError, match=f"{next(iter(option))} \\(blip_tf decodes"):
        load("tf", CAPTION, "varied").generate(INPUTS["pixel_values"], **option)
