"""Training batches, the synthetic dataset and the demo metrics (framework-neutral)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blip_core import BlipImageProcessor, BlipProcessor, BlipTokenizer
from blip_core.demo.synthetic import COLORS, COUNTS, SHAPES, render, samples, scene
from blip_core.demo.tasks import exact_match, held_out, roc_auc
from blip_core.processing.tokenization import BUNDLED_VOCAB_FILE
from blip_core.training import caption_examples, itm_examples, read_captioned_folder, vqa_examples

DEC, CLS, SEP, PAD = 30522, 101, 102, 0


@pytest.fixture(scope="module")
def processor():
    return BlipProcessor(BlipImageProcessor(size=32), BlipTokenizer(vocab_file=BUNDLED_VOCAB_FILE))


def images(count):
    return [np.full((20, 30, 3), 40 * i, np.uint8) for i in range(count)]


def test_caption_examples_start_with_bos_and_ignore_padding(processor):
    batch = caption_examples(processor, images(2), ["a red square", "two blue circles on a green background"])
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    assert (batch["input_ids"][:, 0] == DEC).all()
    short = batch["attention_mask"][0] == 0
    assert short.any() and (batch["labels"][0][short] == -100).all()
    assert (batch["labels"][0][~short] == batch["input_ids"][0][~short]).all()
    assert batch["input_ids"][0][batch["attention_mask"][0].sum() - 1] == SEP


def test_caption_prompt_is_masked_only_when_asked(processor):
    prompt_ids = processor.tokenizer("a picture of", add_special_tokens=False)["input_ids"]
    masked = caption_examples(processor, images(1), ["a cat"], prompt="a picture of")
    kept = caption_examples(processor, images(1), ["a cat"], prompt="a picture of", mask_prompt=False)
    assert (masked["labels"][0, : 1 + len(prompt_ids)] == -100).all()
    assert masked["labels"][0, 1 + len(prompt_ids)] == processor.tokenizer.convert_tokens_to_ids("a")
    assert kept["labels"][0, 1 : 1 + len(prompt_ids)].tolist() == prompt_ids


def test_vqa_examples_use_answers_as_decoder_inputs(processor):
    batch = vqa_examples(processor, images(2), ["how many circles?", "what color?"], ["two", "dark blue"])
    assert batch["input_ids"][:, 0].tolist() == [CLS, CLS]
    assert (batch["decoder_input_ids"][:, 0] == DEC).all()
    two = processor.tokenizer.convert_tokens_to_ids("two")
    assert batch["labels"][0].tolist() == [DEC, two, SEP, -100]
    assert batch["decoder_attention_mask"][0].tolist() == [1, 1, 1, 0]


def test_itm_examples_pair_each_image_with_a_match_then_a_mismatch(processor):
    captions = ["one red circle", "two blue squares", "three green triangles"]
    batch = itm_examples(processor, images(3), captions, seed=0)
    assert batch["match"].tolist() == [1, 1, 1, 0, 0, 0]
    texts = processor.batch_decode(batch["input_ids"], skip_special_tokens=True)
    assert texts[:3] == captions
    assert all(negative != positive for negative, positive in zip(texts[3:], captions, strict=True))
    assert np.array_equal(batch["pixel_values"][:3], batch["pixel_values"][3:])
    chosen = itm_examples(processor, images(1), ["a cat"], negatives=["a dog"])
    assert processor.batch_decode(chosen["input_ids"], skip_special_tokens=True) == ["a cat", "a dog"]


def test_helpers_reject_mismatched_lengths(processor):
    with pytest.raises(ValueError, match="2 images and 1 captions"):
        caption_examples(processor, images(2), ["a"])
    with pytest.raises(ValueError, match="2 images, 2 questions and 1 answers"):
        vqa_examples(processor, images(2), ["a", "b"], ["c"])


def test_read_captioned_folder(tmp_path):
    for name in ("a.png", "b.png"):
        render(scene(0, 0)).save(tmp_path / name)
    (tmp_path / "captions.jsonl").write_text(
        json.dumps({"file": "a.png", "caption": "x"}) + "\n\n" + json.dumps({"file": "b.png", "caption": "y"}) + "\n"
    )
    assert read_captioned_folder(tmp_path) == [(tmp_path / "a.png", "x"), (tmp_path / "b.png", "y")]
    (tmp_path / "captions.jsonl").write_text('{"file": "a.png"}\n')
    with pytest.raises(ValueError, match="captions.jsonl line 1"):
        read_captioned_folder(tmp_path)
    (tmp_path / "captions.jsonl").unlink()
    (tmp_path / "captions.csv").write_text("file,caption\na.png,x\nmissing.png,y\n")
    with pytest.raises(ValueError, match="1 captioned images are missing.*missing.png"):
        read_captioned_folder(tmp_path)
    (tmp_path / "captions.csv").unlink()
    with pytest.raises(ValueError, match="no captions.jsonl or captions.csv"):
        read_captioned_folder(tmp_path)


def test_synthetic_scenes_are_deterministic_and_described_by_their_texts():
    first, again = samples(5, 10, 20), samples(5, 10, 20)
    for (image, item), (image2, item2) in zip(first, again, strict=True):
        assert item == item2 and np.array_equal(np.asarray(image), np.asarray(image2))
        words = item.caption.split()
        assert words[0] == COUNTS[item.count - 1] and words[1] == item.color and words[-2] == item.background
        assert words[2] == (item.shape if item.count == 1 else item.shape + "s")
        assert len(item.boxes) == item.count and item.color != item.background
        pixels = np.asarray(image).reshape(-1, 3)
        assert (pixels == COLORS[item.color]).all(axis=1).any()
        assert dict(item.questions())[f"how many {item.shape}s are there?"] == COUNTS[item.count - 1]
    assert {item.shape for _, item in samples(0, 0, 60)} == set(SHAPES)


def test_altered_scenes_change_exactly_one_attribute():
    rng = np.random.default_rng(0)
    for index in range(50):
        item = scene(1, index)
        other = item.altered(rng)
        changed = [f for f in ("count", "color", "shape", "background") if getattr(other, f) != getattr(item, f)]
        assert len(changed) == 1 and other.caption != item.caption and other.color != other.background


def test_held_out_asks_each_kind_of_question():
    held = held_out(8)
    assert len(held.images) == len(held.questions) == len(held.answers) == len(held.negatives) == 8
    assert held.questions[0].startswith("how many") and held.questions[3] == "what color is the background?"
    assert held.answers[3] == held.scenes[3].background


def test_metrics():
    assert exact_match(["a b", "c "], ["a b", "d"]) == 0.5
    assert roc_auc(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 1, 0, 0])) == 1.0
    assert roc_auc(np.array([0.5, 0.2, 0.5, 0.7]), np.array([1, 1, 0, 0])) == pytest.approx(0.125)
    with pytest.raises(ValueError):
        roc_auc(np.array([0.5]), np.array([1]))
