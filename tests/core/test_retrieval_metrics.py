"""Retrieval recall@K (issue 15 item 5): hand-made score matrices with known ranks, ties, and an independent
re-implementation of salesforce/BLIP's `itm_eval` (one Python loop per query, written from its algorithm)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blip_core.tasks.retrieval_metrics import METRIC_NAMES, ground_truth, read_annotations, retrieval_recalls


def _loop_itm_eval(i2t: np.ndarray, t2i: np.ndarray, txt2img: list[int], img2txt: list[list[int]]) -> dict:
    """The original's definition, query by query: rank = position in the row's `argsort(...)[::-1]`."""

    def recalls(ranks: list[int]) -> list[float]:
        return [100.0 * sum(r < k for r in ranks) / len(ranks) for k in (1, 5, 10)]

    text_ranks = []
    for index, row in enumerate(i2t):
        order = list(np.argsort(row)[::-1])
        text_ranks.append(min(order.index(t) for t in img2txt[index]))
    image_ranks = [list(np.argsort(row)[::-1]).index(txt2img[index]) for index, row in enumerate(t2i)]
    txt, img = recalls(text_ranks), recalls(image_ranks)
    values = [*txt, sum(txt) / 3, *img, sum(img) / 3, (sum(txt) / 3 + sum(img) / 3) / 2]
    return dict(zip(METRIC_NAMES, values, strict=True))


def _truth(captions_per_image: list[int]):
    return ground_truth(
        [{"image": f"{i}.jpg", "caption": [f"c{i}_{j}" for j in range(n)]} for i, n in enumerate(captions_per_image)]
    )


def test_known_ranks():
    truth = _truth([2, 1, 2])  # texts 0,1 -> image 0; 2 -> image 1; 3,4 -> image 2
    assert truth.text_to_image == [0, 0, 1, 2, 2] and truth.image_to_texts == [[0, 1], [2], [3, 4]]
    i2t = np.array(
        [
            [0.1, 0.9, 0.5, 0.3, 0.2],  # best own text (1) first: rank 0
            [0.9, 0.8, 0.1, 0.7, 0.6],  # own text 2 last: rank 4
            [0.1, 0.2, 0.3, 0.4, 0.35],  # own text 3 first: rank 0
        ]
    )
    t2i = np.array(
        [
            [0.5, 0.6, 0.1],  # image 0 second: rank 1
            [0.9, 0.1, 0.2],  # rank 0
            [0.3, 0.2, 0.1],  # image 1 second: rank 1
            [0.1, 0.2, 0.9],  # rank 0
            [0.9, 0.8, 0.7],  # image 2 last: rank 2
        ]
    )
    got = retrieval_recalls(i2t, t2i, truth)
    expected = {"txt_r1": 200 / 3, "txt_r5": 100.0, "txt_r10": 100.0, "img_r1": 40.0, "img_r5": 100.0, "img_r10": 100.0}
    for name, value in expected.items():
        assert got[name] == pytest.approx(value)
    assert got["txt_r_mean"] == pytest.approx((200 / 3 + 200) / 3)
    assert got["img_r_mean"] == pytest.approx(80.0)
    assert got["r_mean"] == pytest.approx((got["txt_r_mean"] + 80.0) / 2)
    assert got == pytest.approx(_loop_itm_eval(i2t, t2i, truth.text_to_image, truth.image_to_texts))


def test_recall_at_5_and_10_boundaries():
    truth = _truth([1] * 12)
    scores = -np.tile(np.arange(12, dtype=np.float64), (12, 1))  # column 0 best ... column 11 worst
    # query i's own item is column i: ranks 0..11 -> R@1 = 1/12, R@5 = 5/12, R@10 = 10/12
    got = retrieval_recalls(scores, scores, truth)
    assert [got["txt_r1"], got["txt_r5"], got["txt_r10"]] == pytest.approx([100 / 12, 500 / 12, 1000 / 12])
    assert [got["img_r1"], got["img_r5"], got["img_r10"]] == pytest.approx([100 / 12, 500 / 12, 1000 / 12])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(6))
def test_equals_independent_loop_with_ties(dtype, seed):
    """Random corpora with many ties (-100 outside a top-k, few distinct values), rows shorter and longer than
    NumPy's small-sort threshold: the same nine numbers as the loop re-implementation."""
    rng = np.random.RandomState(seed)
    counts = list(rng.randint(1, 6, size=rng.randint(3, 40)))
    truth = _truth(counts)
    n_images, n_texts = len(counts), sum(counts)
    i2t = rng.randint(0, 4, size=(n_images, n_texts)).astype(dtype)
    t2i = rng.randint(0, 4, size=(n_texts, n_images)).astype(dtype)
    i2t[rng.rand(*i2t.shape) < 0.5] = -100
    t2i[rng.rand(*t2i.shape) < 0.5] = -100
    got = retrieval_recalls(i2t, t2i, truth)
    assert got == pytest.approx(_loop_itm_eval(i2t, t2i, truth.text_to_image, truth.image_to_texts), abs=1e-12)


def test_two_way_tie_follows_argsort_reversed():
    truth = _truth([1, 1])
    scores = np.array([[1.0, 1.0], [1.0, 1.0]])
    got = retrieval_recalls(scores, scores, truth)
    expected = _loop_itm_eval(scores, scores, truth.text_to_image, truth.image_to_texts)
    assert got == pytest.approx(expected)
    assert got["txt_r1"] == 50.0 and got["txt_r5"] == 100.0  # exactly one of the two tied queries ranks first


def test_annotation_file_and_errors(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps([{"image": "a.jpg", "caption": ["x", "y"]}, {"image": "b.jpg", "caption": "z"}]))
    truth = read_annotations(path)
    assert truth.images == ["a.jpg", "b.jpg"] and truth.texts == ["x", "y", "z"] and truth.text_to_image == [0, 0, 1]
    with pytest.raises(ValueError, match="shape"):
        retrieval_recalls(np.zeros((2, 2)), np.zeros((3, 2)), truth)
    with pytest.raises(ValueError, match="NaN"):
        retrieval_recalls(np.full((2, 3), np.nan), np.zeros((3, 2)), truth)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_annotations(bad)
    with pytest.raises(OSError):
        read_annotations(tmp_path / "missing.json")
    for records in (
        [],
        {"image": "a"},
        [{"caption": ["x"]}],
        [{"image": "a.jpg", "caption": []}],
        [{"image": "a", "caption": [1]}],
    ):
        with pytest.raises(ValueError):
            ground_truth(records)
