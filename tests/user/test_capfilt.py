"""CapFilt's decisions are the ITM head's: every probability and cosine recomputed through the public
`BlipForImageTextRetrieval` API, captions through `BlipForConditionalGeneration.generate`, and the same results in
PyTorch and TensorFlow.

The input: 16 synthetic scenes the demo models know, even ones with their true caption as web text, odd ones with
a wrong caption, one without web text (`tests/helpers/bulk_scenes.py`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from blip_core.bulk import capfilt, caption_dataset
from tests.helpers.bulk_scenes import CAPTIONER, FILTER, write_scenes

SEED = 7
SAMPLING = {"temperature": 2.0, "max_new_tokens": 20}  # hot nucleus sampling: captions differ between draws
THRESHOLD_MARGIN = 1e-4  # no probability this close to a threshold (a decision the frameworks could round apart)


def _run(folder: Path, **options) -> dict[str, dict]:
    """CapFilt over `folder` (rows in memory), rows by key."""
    options = {"captioner": CAPTIONER, "filter_model": FILTER, "workers": 0, "batch_size": 8, **options}
    summary = capfilt(folder, None, **options)
    rows = {row["key"]: row for row in summary.rows}
    assert len(rows) == len(summary.rows)
    return {"counts": summary.counts, "rows": rows}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("capfilt") / "scenes"
    return folder, write_scenes(folder)


@pytest.fixture(scope="module")
def models():
    from blip_core import BlipProcessor
    from blip_torch import BlipForConditionalGeneration, BlipForImageTextRetrieval

    return {
        "filter": BlipForImageTextRetrieval.from_pretrained(FILTER).eval(),
        "filter_processor": BlipProcessor.from_pretrained(FILTER),
        "captioner": BlipForConditionalGeneration.from_pretrained(CAPTIONER).eval(),
        "captioner_processor": BlipProcessor.from_pretrained(CAPTIONER),
    }


@pytest.fixture(scope="module")
def pt_nucleus(scenes):
    return _run(scenes[0], framework="pt", num_captions=3, seed=SEED, **SAMPLING)


@pytest.fixture(scope="module")
def pt_beam(scenes):
    return _run(scenes[0], framework="pt", num_captions=3, sampling="beam", protocol="original", max_text_length=7)


def _image(folder: Path, key: str) -> PIL.Image.Image:
    with PIL.Image.open(folder / key) as image:
        return image.convert("RGB")


def independent_scores(models, folder: Path, row: dict, protocol: str, max_length: int) -> tuple[list, list]:
    """(ITM match probabilities, ITC cosines) of the row's web text (if any) and captions, by the model's forward."""
    import torch

    from blip_core.config.model_constants import ENC_TOKEN_ID
    from blip_core.processing.text_cleaning import clean_caption

    texts = ([row["text"]] if row["text"] is not None else []) + row["captions"]
    if protocol == "original":
        texts = [clean_caption(text) for text in texts]
    batch = models["filter_processor"](
        images=_image(folder, row["key"]),
        text=texts,
        return_tensors="pt",
        padding=True,
        truncation=True,
        max_length=max_length,
    )
    pixels, ids, mask = batch["pixel_values"], batch["input_ids"], batch["attention_mask"]
    assert ids.shape[1] <= max_length
    itm_ids = ids.clone()
    if protocol == "original":
        itm_ids[:, 0] = ENC_TOKEN_ID
    with torch.no_grad():
        itm = models["filter"](
            input_ids=itm_ids, attention_mask=mask, pixel_values=pixels.repeat(len(texts), 1, 1, 1), use_itm_head=True
        ).itm_score.softmax(-1)[:, 1]
        itc = models["filter"](input_ids=ids, attention_mask=mask, pixel_values=pixels, use_itm_head=False).itm_score
    return itm.tolist(), itc[0].tolist()


def check_against_model(models, folder: Path, result: dict, threshold: float, protocol: str, max_length: int) -> None:
    """Every number and decision of a CapFilt result against the independent computation; the summary counts."""
    counts = dict.fromkeys(("web_texts", "web_kept", "captions", "captions_kept"), 0)
    for key, row in result["rows"].items():
        itm, itc = independent_scores(models, folder, row, protocol, max_length)
        has_text = row["text"] is not None
        if has_text:
            np.testing.assert_allclose(row["text_itm"], itm[0], atol=1e-5, err_msg=key)
            np.testing.assert_allclose(row["text_itc"], itc[0], atol=1e-5, err_msg=key)
            assert row["text_kept"] is (row["text_itm"] > threshold), key
            itm, itc = itm[1:], itc[1:]
            counts["web_texts"] += 1
            counts["web_kept"] += row["text_kept"]
        else:
            assert (row["text_itm"], row["text_itc"], row["text_kept"]) == (None, None, None), key
        np.testing.assert_allclose(row["captions_itm"], itm, atol=1e-5, err_msg=key)
        np.testing.assert_allclose(row["captions_itc"], itc, atol=1e-5, err_msg=key)
        assert row["captions_kept"] == [p > threshold for p in row["captions_itm"]], key
        kept = [text for text, k in zip(row["captions"], row["captions_kept"], strict=True) if k]
        assert row["kept_texts"] == ([row["text"]] if has_text and row["text_kept"] else []) + kept, key
        assert row["error"] is None
        counts["captions"] += len(row["captions"])
        counts["captions_kept"] += sum(row["captions_kept"])
    assert result["counts"] == {"records": len(result["rows"]), "failed": 0, **counts}


def test_nucleus_decisions_are_the_itm_heads(models, scenes, pt_nucleus):
    folder, written = scenes
    check_against_model(models, folder, pt_nucleus, 0.5, "transformers", 35)
    rows = pt_nucleus["rows"]
    assert sorted(rows) == [scene.key for scene in written]
    for scene in written:  # the demo filter keeps the true web texts and drops the altered ones
        assert rows[scene.key]["text"] == scene.text
        assert rows[scene.key]["text_kept"] is (None if scene.text is None else scene.right), scene.key
    assert pt_nucleus["counts"]["web_texts"] == 15 and pt_nucleus["counts"]["web_kept"] == 8
    assert all(len(row["captions"]) == 3 for row in rows.values())


def test_nucleus_captions_are_seeded_generate(models, scenes, pt_nucleus):
    """The captions of a direct `generate(do_sample=True, top_p=0.9, sampling_seeds=...)` on all 16 images at once
    (another batch composition than the job's two batches of 8)."""
    import torch

    from blip_core.generation.sampling import key_seed

    folder, written = scenes
    keys = [scene.key for scene in written]
    pixels = models["captioner_processor"](images=[_image(folder, key) for key in keys], return_tensors="pt")
    with torch.no_grad():
        ids = models["captioner"].generate(
            pixel_values=pixels["pixel_values"],
            do_sample=True,
            top_p=0.9,
            num_return_sequences=3,
            sampling_seeds=[key_seed(SEED, key) for key in keys],
            **SAMPLING,
        )
    texts = [text.strip() for text in models["captioner_processor"].batch_decode(ids, skip_special_tokens=True)]
    expected = {key: texts[3 * i : 3 * i + 3] for i, key in enumerate(keys)}
    assert {key: row["captions"] for key, row in pt_nucleus["rows"].items()} == expected
    assert sum(len(set(group)) > 1 for group in expected.values()) >= 3  # sampling really drew different captions


def test_beam_captions_and_original_protocol(models, scenes, pt_beam):
    """Beam search: the captions of `generate(num_beams=3, num_return_sequences=3)`; protocol "original": texts
    cleaned and cut to 7 tokens (the captions are 9), [ENC] first in the ITM pass."""
    import torch

    folder, written = scenes
    check_against_model(models, folder, pt_beam, 0.5, "original", 7)
    keys = [scene.key for scene in written]
    pixels = models["captioner_processor"](images=[_image(folder, key) for key in keys], return_tensors="pt")
    with torch.no_grad():
        ids = models["captioner"].generate(pixel_values=pixels["pixel_values"], num_beams=3, num_return_sequences=3)
    texts = [text.strip() for text in models["captioner_processor"].batch_decode(ids, skip_special_tokens=True)]
    assert {key: row["captions"] for key, row in pt_beam["rows"].items()} == {
        key: texts[3 * i : 3 * i + 3] for i, key in enumerate(keys)
    }
    assert 0 < pt_beam["counts"]["captions_kept"] < pt_beam["counts"]["captions"]  # the filter drops some beams


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_threshold_extremes(scenes, pt_nucleus, threshold):
    """Threshold 0 keeps every text (no probability is 0), 1 keeps none; the scores do not depend on it."""
    result = _run(scenes[0], framework="pt", num_captions=3, seed=SEED, threshold=threshold, **SAMPLING)
    for key, row in result["rows"].items():
        reference = pt_nucleus["rows"][key]
        assert row["captions"] == reference["captions"]
        np.testing.assert_allclose(row["captions_itm"], reference["captions_itm"], rtol=0, atol=1e-6)
        keep = threshold == 0.0
        assert row["captions_kept"] == [keep] * 3
        assert row["text_kept"] is (None if row["text"] is None else keep)
        assert row["kept_texts"] == ([row["text"]] * (row["text"] is not None) + row["captions"] if keep else [])
    counts = result["counts"]
    assert (counts["web_kept"], counts["captions_kept"]) == ((15, 48) if threshold == 0.0 else (0, 0))


# Both frameworks.
def _assert_same(pt: dict, tf: dict, threshold: float = 0.5) -> None:
    assert pt["counts"] == tf["counts"]
    assert sorted(pt["rows"]) == sorted(tf["rows"])
    for key, row in pt["rows"].items():
        other = tf["rows"][key]
        assert other["captions"] == row["captions"], key
        probabilities = row["captions_itm"] + ([row["text_itm"]] if row["text"] is not None else [])
        assert min(abs(p - threshold) for p in probabilities) > THRESHOLD_MARGIN, key
        for name in ("text_itm", "text_itc"):
            if row[name] is None:
                assert other[name] is None
            else:
                assert other[name] == pytest.approx(row[name], abs=1e-5), (key, name)
        for name in ("captions_itm", "captions_itc"):
            np.testing.assert_allclose(other[name], row[name], rtol=0, atol=1e-5, err_msg=f"{key} {name}")
        for name in ("text_kept", "captions_kept", "kept_texts", "text", "error"):
            assert other[name] == row[name], (key, name)


def test_tensorflow_nucleus_equals_pytorch(scenes, pt_nucleus):
    _assert_same(pt_nucleus, _run(scenes[0], framework="tf", num_captions=3, seed=SEED, **SAMPLING))


def test_tensorflow_beam_equals_pytorch(scenes, pt_beam):
    tf = _run(scenes[0], framework="tf", num_captions=3, sampling="beam", protocol="original", max_text_length=7)
    _assert_same(pt_beam, tf)


def test_caption_job_same_in_both_frameworks(scenes):
    """`caption_dataset` with seeded sampling: the same caption per record in PyTorch and TensorFlow."""
    options = {"model": CAPTIONER, "workers": 0, "batch_size": 8, "do_sample": True, "seed": SEED, **SAMPLING}
    rows = {}
    for framework in ("pt", "tf"):
        rows[framework] = caption_dataset(scenes[0], None, framework=framework, **options).rows
    assert [row["key"] for row in rows["pt"]] == [scene.key for scene in scenes[1]]
    assert rows["pt"] == rows["tf"]
    assert all(row["caption"] and row["error"] is None for row in rows["pt"])


def test_options_that_would_shift_captions_are_refused(scenes):
    """One caption per record in a caption job; capfilt owns how many captions and how they are drawn."""
    with pytest.raises(ValueError, match="num_return_sequences must be 1, got 3"):
        caption_dataset(scenes[0], None, model=CAPTIONER, num_beams=3, num_return_sequences=3)
    with pytest.raises(ValueError, match="capfilt sets num_return_sequences itself"):
        capfilt(scenes[0], None, captioner=CAPTIONER, filter_model=FILTER, num_return_sequences=2)
    with pytest.raises(ValueError, match="capfilt sets do_sample itself"):
        capfilt(scenes[0], None, captioner=CAPTIONER, filter_model=FILTER, sampling="beam", do_sample=True)
