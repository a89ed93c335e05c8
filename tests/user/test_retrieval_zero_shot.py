"""`pipeline("zero-shot-image-classification", scoring=...)` (issue 15 item 9): ITC (CLIP-like) or ITM scoring,
checked against a reference from `forward`, in both frameworks; the default stays the model's own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import blip_torch
from blip_core import BlipProcessor, pipeline
from tests.parity.test_retrieval_twins import _images, write_seeded_retrieval

LABELS = ["red square", "two green circles", "a dog", "nothing"]
TEMPLATE = "This is a photo of {}."


@pytest.fixture(scope="module")
def retrieval_folder(tmp_path_factory):
    return write_seeded_retrieval(tmp_path_factory.mktemp("zero_shot_retrieval"))


def _scores(result: list[dict]) -> dict[str, float]:
    return {record["label"]: record["score"] for record in result}


def _reference_itc(folder, image) -> np.ndarray:
    """softmax(cosine / 0.07) over the labels, the cosines from forward(use_itm_head=False), one label at a time."""
    model, processor = (
        blip_torch.BlipForImageTextRetrieval.from_pretrained(folder),
        BlipProcessor.from_pretrained(folder),
    )
    cosines = []
    for label in LABELS:
        batch = processor(images=[image], text=[TEMPLATE.format(label)], return_tensors="pt")
        with torch.no_grad():
            cosines.append(float(model(**batch, use_itm_head=False).itm_score[0, 0]))
    logits = np.array(cosines) / 0.07
    return np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_itc_scoring_on_a_retrieval_model_equals_reference(retrieval_folder, framework):
    image = _images(1, 40)[0]
    pipe = pipeline("zero-shot-image-classification", model=str(retrieval_folder), framework=framework)
    got = _scores(pipe(image, candidate_labels=LABELS, scoring="itc"))
    expected = _reference_itc(retrieval_folder, image)
    np.testing.assert_allclose([got[label] for label in LABELS], expected, atol=1e-4)
    assert sum(got.values()) == pytest.approx(1.0, abs=1e-5)


def test_itm_is_the_default_on_retrieval_models_and_twins_agree(retrieval_folder):
    images = _images(2, 40)
    results = {}
    for framework in ("pt", "tf"):
        pipe = pipeline("zero-shot-image-classification", model=str(retrieval_folder), framework=framework)
        default = pipe(images, candidate_labels=LABELS)
        assert default == pipe(images, candidate_labels=LABELS, scoring="itm")
        results[framework] = {
            scoring: pipe(images, candidate_labels=LABELS, scoring=scoring) for scoring in ("itc", "itm")
        }
    for scoring in ("itc", "itm"):
        for pt, tf in zip(results["pt"][scoring], results["tf"][scoring], strict=True):
            assert [r["label"] for r in pt] == [r["label"] for r in tf]
            np.testing.assert_allclose([r["score"] for r in pt], [r["score"] for r in tf], atol=1e-4)
    assert results["pt"]["itc"] != results["pt"]["itm"]


def test_blip_model_scores_by_itc_and_refuses_itm(small_models):
    pipe = pipeline("zero-shot-image-classification", model=str(small_models["BlipModel"]), framework="pt")
    image = _images(1)[0]
    assert pipe(image, candidate_labels=LABELS) == pipe(image, candidate_labels=LABELS, scoring="itc")
    with pytest.raises(ValueError, match="no ITM head"):
        pipe(image, candidate_labels=LABELS, scoring="itm")
    with pytest.raises(ValueError, match="scoring must be one of"):
        pipe(image, candidate_labels=LABELS, scoring="clip")
