"""Pipelines for every task in both frameworks: same results, transformers' output shapes, clear errors."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

import blip_core
import blip_tf
import blip_torch
from tests.helpers.images import base_rgb, fixture

IMAGES = [base_rgb(50, 60, seed=1), PIL.Image.fromarray(base_rgb(44, 64, seed=2)), str(fixture("rgba.png"))]


@pytest.fixture(scope="module")
def pipes(small_models):
    cache = {}

    def get(task, framework, name):
        key = (task, framework)
        if key not in cache:
            cache[key] = blip_core.pipeline(task, model=str(small_models[name]), framework=framework)
        return cache[key]

    return get


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_image_to_text(pipes, framework):
    pipe = pipes("image-to-text", framework, "BlipForConditionalGeneration")
    single = pipe(IMAGES[0], max_new_tokens=5)
    assert isinstance(single, list) and set(single[0]) == {"generated_text"}
    many = pipe(IMAGES, max_new_tokens=5, batch_size=2)
    assert len(many) == 3 and many[0] == single
    prompted = pipe(IMAGES[0], prompt="a picture of", max_new_tokens=3)
    assert prompted[0]["generated_text"].startswith("a picture of")


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_visual_question_answering(pipes, framework):
    pipe = pipes("visual-question-answering", framework, "BlipForQuestionAnswering")
    out = pipe(IMAGES[1], question="how many circles are there?", max_new_tokens=4)
    assert set(out[0]) == {"answer"} and isinstance(out[0]["answer"], str)
    with pytest.raises(ValueError, match="needs a question"):
        pipe(IMAGES[1])


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_matching_and_zero_shot(pipes, framework):
    match = pipes("image-text-matching", framework, "BlipForImageTextRetrieval")(
        IMAGES[0], text=["a red circle", "a blue square"]
    )
    assert [m["text"] for m in match] == ["a red circle", "a blue square"]
    assert all(0 <= m["itm_score"] <= 1 and -1 <= m["itc_score"] <= 1 for m in match)
    ranked = pipes("zero-shot-image-classification", framework, "BlipForImageTextRetrieval")(
        IMAGES[0], candidate_labels=["cat", "dog", "car"]
    )
    assert sorted(r["label"] for r in ranked) == ["car", "cat", "dog"]
    assert abs(sum(r["score"] for r in ranked) - 1) < 1e-5 and ranked[0]["score"] >= ranked[-1]["score"]


def test_frameworks_agree(pipes):
    for task, name, kwargs in [
        ("image-to-text", "BlipForConditionalGeneration", {"max_new_tokens": 6, "num_beams": 2}),
        (
            "visual-question-answering",
            "BlipForQuestionAnswering",
            {"question": "what color is it?", "max_new_tokens": 4},
        ),
    ]:
        assert pipes(task, "pt", name)(IMAGES, **kwargs) == pipes(task, "tf", name)(IMAGES, **kwargs)
    a = pipes("image-text-matching", "pt", "BlipForImageTextRetrieval")(IMAGES[2], text=["a", "b c"])
    b = pipes("image-text-matching", "tf", "BlipForImageTextRetrieval")(IMAGES[2], text=["a", "b c"])
    assert all(
        abs(x["itm_score"] - y["itm_score"]) < 1e-5 and abs(x["itc_score"] - y["itc_score"]) < 1e-5
        for x, y in zip(a, b, strict=True)
    )


def test_framework_bound_pipelines(small_models):
    assert (
        blip_torch.pipeline("image-to-text", model=str(small_models["BlipForConditionalGeneration"])).framework == "pt"
    )
    assert blip_tf.pipeline("image-to-text", model=str(small_models["BlipForConditionalGeneration"])).framework == "tf"


def test_bad_task_and_framework(small_models):
    with pytest.raises(ValueError, match="unknown task 'captioning'"):
        blip_core.pipeline("captioning", model=str(small_models["BlipForConditionalGeneration"]))
    with pytest.raises(ValueError, match="framework must be 'pt' or 'tf'"):
        blip_core.pipeline("image-to-text", model=str(small_models["BlipForConditionalGeneration"]), framework="jax")


def test_loaded_model_and_processor(small_models):
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(small_models["BlipForConditionalGeneration"])
    processor = blip_core.BlipProcessor.from_pretrained(small_models["BlipForConditionalGeneration"])
    pipe = blip_core.pipeline("image-to-text", model=model, processor=processor, framework="pt")
    assert pipe(np.zeros((32, 32, 3), np.uint8), max_new_tokens=2)[0]["generated_text"] is not None
