"""Two-stage retrieval against an independent NumPy reference written from salesforce/BLIP's `evaluation`
(`train_retrieval.py`): ITC cosines from one `forward(use_itm_head=False)` per image (each text tokenized alone,
no padding), top-k by NumPy, ITM logits from one `forward(use_itm_head=True)` per pair, score =
`itm_logit[:, 1] + cosine`, -100 elsewhere. Under the original protocol the texts are cleaned by the rule below
(written here from the original's `pre_caption`), padded to 35 tokens, and [ENC] starts the ITM pass only."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf
import torch

import blip_tf
import blip_torch
from blip_core import BlipProcessor
from blip_core.tasks.retrieval import retrieve
from tests.parity.test_retrieval_twins import TEXTS, _images, write_seeded_retrieval

ENC = 30523


def _pre_caption(text: str) -> str:
    text = re.sub(r"([.!\"()*#:;~])", " ", text.lower())
    text = re.sub(r"\s{2,}", " ", text).rstrip("\n").strip(" ")
    return " ".join(text.split(" ")[:30])


def _forward(model, framework: str, use_itm_head: bool = True, **arrays: np.ndarray) -> np.ndarray:
    if framework == "pt":
        with torch.no_grad():
            return model(
                **{k: torch.from_numpy(v) for k, v in arrays.items()}, use_itm_head=use_itm_head
            ).itm_score.numpy()
    return model(**{k: tf.constant(v) for k, v in arrays.items()}, use_itm_head=use_itm_head).itm_score.numpy()


def _reference(model, framework, processor, images, texts, k, protocol):
    pixels = [processor(images=[image], return_tensors="np")["pixel_values"] for image in images]
    if protocol == "original":
        tokens = [
            processor.tokenizer(
                _pre_caption(t), padding="max_length", truncation=True, max_length=35, return_tensors="np"
            )
            for t in texts
        ]
    else:
        tokens = [processor.tokenizer(t, return_tensors="np") for t in texts]

    def itc(i: int, j: int) -> float:
        ids, mask = tokens[j]["input_ids"].astype(np.int64), tokens[j]["attention_mask"].astype(np.int64)
        return float(
            _forward(model, framework, pixel_values=pixels[i], input_ids=ids, attention_mask=mask, use_itm_head=False)[
                0, 0
            ]
        )

    def itm(i: int, j: int) -> float:
        ids, mask = tokens[j]["input_ids"].astype(np.int64).copy(), tokens[j]["attention_mask"].astype(np.int64)
        if protocol == "original":
            ids[:, 0] = ENC
        return float(_forward(model, framework, pixel_values=pixels[i], input_ids=ids, attention_mask=mask)[0, 1])

    cos = np.array([[itc(i, j) for j in range(len(texts))] for i in range(len(images))])
    i2t = np.full((len(images), len(texts)), -100.0)
    t2i = np.full((len(texts), len(images)), -100.0)
    for i in range(len(images)):
        for j in np.argsort(-cos[i])[: min(k, len(texts))]:
            i2t[i, j] = itm(i, j) + cos[i, j]
    for j in range(len(texts)):
        for i in np.argsort(-cos[:, j])[: min(k, len(images))]:
            t2i[j, i] = itm(i, j) + cos[i, j]
    return cos, i2t, t2i


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = write_seeded_retrieval(tmp_path_factory.mktemp("seeded_retrieval"))
    return {
        "pt": blip_torch.BlipForImageTextRetrieval.from_pretrained(folder),
        "tf": blip_tf.TFBlipForImageTextRetrieval.from_pretrained(folder),
        "processor": BlipProcessor.from_pretrained(folder),
    }


@pytest.mark.parametrize("framework", ["pt", "tf"])
@pytest.mark.parametrize(("protocol", "k"), [("transformers", 3), ("original", 2), ("original", 1000)])
def test_retrieve_equals_reference(small, framework, protocol, k):
    images = _images(4)
    texts = TEXTS[:6]
    cos, i2t, t2i = _reference(small[framework], framework, small["processor"], images, texts, k, protocol)
    got = retrieve(small[framework], small["processor"], images, texts, k=k, protocol=protocol, batch_size=3)
    for rows in (cos, cos.T):  # a near-tie at the top-k boundary would make the candidate set ambiguous
        ordered = -np.sort(-rows, axis=1)
        if k < rows.shape[1]:
            assert (ordered[:, k - 1] - ordered[:, k]).min() > 1e-4
    np.testing.assert_allclose(got.similarity, cos, atol=1e-4)
    np.testing.assert_array_equal(got.image_to_text == -100, i2t == -100)
    np.testing.assert_array_equal(got.text_to_image == -100, t2i == -100)
    np.testing.assert_allclose(got.image_to_text, i2t, atol=1e-4)
    np.testing.assert_allclose(got.text_to_image, t2i, atol=1e-4)


def test_protocols_differ_where_the_original_says(small):
    """[ENC] changes the ITM logits; cleaning changes the texts' ITC features: the protocols must not agree."""
    images, texts = _images(3), TEXTS[:3]
    model, processor = small["pt"], small["processor"]
    plain = retrieve(model, processor, images, texts, k=3)
    original = retrieve(model, processor, images, texts, k=3, protocol="original")
    assert np.abs(plain.image_to_text - original.image_to_text).max() > 1e-3
    clean = ["a red square on a blue background", "two green circles", "a dog brown on a beach"]
    cleaned = retrieve(model, processor, images, clean, k=3)
    np.testing.assert_allclose(cleaned.similarity, original.similarity, atol=1e-4)  # ITC keeps [CLS]
