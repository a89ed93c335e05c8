"""`blip eval caption` as users run it (a subprocess), and the caption metrics behind it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from blip_core.cli.eval_caption import generation_options, without_prompt
from blip_core.demo.tasks import held_out
from blip_core.tasks.caption_metrics import (
    caption_scores,
    match_references,
    ptb_tokenize,
    read_caption_references,
)

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
START, COUNT = 1000, 6  # held-out scenes, as the demo quality test uses


def blip(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "blip_core.cli", "eval", "caption", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
    )


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    """A folder of held-out demo scenes with a Karpathy-style and a COCO-style reference file."""
    folder = tmp_path_factory.mktemp("held")
    (folder / "images" / "val").mkdir(parents=True)
    scenes = held_out(COUNT, start=START)
    karpathy, images, notes = [], [], []
    for number, (image, scene) in enumerate(zip(scenes.images, scenes.scenes, strict=True)):
        name = f"val/scene_{number}.png"
        image.save(folder / "images" / name)
        karpathy.append({"image": name, "caption": [scene.caption, scene.caption + "."]})
        images.append({"id": number, "file_name": f"scene_{number}.png"})
        notes.append({"image_id": number, "caption": scene.caption.upper()})
    (folder / "karpathy.json").write_text(json.dumps(karpathy))
    (folder / "coco.json").write_text(json.dumps({"images": images, "annotations": notes}))
    return folder, [scene.caption for scene in scenes.scenes]


@pytest.mark.parametrize(
    "protocol,style,framework",
    [("original", "karpathy", "pt"), ("transformers", "coco", "pt"), ("original", "coco", "tf")],
)
def test_demo_captioner_scores_perfectly_on_held_out_scenes(held, tmp_path, protocol, style, framework):
    """The demo captioner was trained without a prompt: `--prompt ''`. Its held-out captions are all exact."""
    folder, truths = held
    out = tmp_path / "captions.jsonl"
    found = blip(
        "--images", folder / "images", "--annotations", folder / f"{style}.json", "--out", out,
        "--protocol", protocol, "--prompt", "", "--framework", framework,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    summary = json.loads(found.stdout)
    assert summary["images"] == COUNT and summary["protocol"] == protocol
    assert summary["unannotated_images"] == 0 and summary["missing_images"] == 0
    assert summary["exact_match"] == 1.0
    assert summary["bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert summary["cider"] == pytest.approx(10.0, abs=1e-6)  # CIDEr-D of captions equal to all references
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [record["image"] for record in records] == [f"val/scene_{n}.png" for n in range(COUNT)]
    assert [record["caption"] for record in records] == truths


def test_refuses_to_overwrite_and_needs_something_to_report(held, tmp_path):
    folder, _ = held
    out = tmp_path / "kept.jsonl"
    out.write_text("mine\n")
    found = blip("--images", folder / "images", "--out", out)
    assert found.returncode == 2 and "--overwrite" in found.stderr and found.stdout == ""
    assert out.read_text() == "mine\n"
    found = blip("--images", folder / "images")
    assert found.returncode == 2 and "nothing to report" in found.stderr
    found = blip("--images", folder / "images", "--annotations", tmp_path / "missing.json")
    assert found.returncode == 2 and "missing.json" in found.stderr and len(found.stderr.splitlines()) == 1


def test_paper_protocol_settings():
    assert generation_options("transformers") == {
        "num_beams": 3, "max_length": 20, "min_length": 5, "repetition_penalty": 1.0
    }  # fmt: skip
    assert generation_options("original")["beam_length_rule"] == "whole_sequence"
    with pytest.raises(ValueError, match="protocol"):
        generation_options("paper")
    assert without_prompt("a picture of a dog on a beach", "a picture of ") == "a dog on a beach"
    assert without_prompt("a dog", "a picture of ") == "a dog"


@pytest.mark.parametrize(
    "text,tokens",
    [
        ("A dog's ball, on the beach.", "a dog 's ball on the beach"),
        ("They don't (really) know...", "they do n't really know"),
        ("A black-and-white photo of 3.5 cats!", "a black-and-white photo of 3.5 cats"),
        ('"Quoted" text; here: yes?', "quoted text here yes"),
        ("A MAN riding a horse -- fast\nand far", "a man riding a horse fast and far"),
    ],
)
def test_ptb_tokenize_follows_the_coco_evaluation(text, tokens):
    assert ptb_tokenize(text) == tokens


def test_scores_against_hand_computed_values():
    """BLEU by hand: "a dog on a beach" against "a dog on the beach": precisions 4/5, 2/4, 1/3 and 0/2, brevity
    1, so BLEU-1 0.8 and BLEU-2 sqrt(0.8 * 0.5); an exact caption scores 1 everywhere."""
    scores = caption_scores({"x": "A dog on a beach."}, {"x": ["a dog on the beach"]})
    assert scores["bleu_1"] == pytest.approx(0.8, abs=1e-6)
    assert scores["bleu_2"] == pytest.approx((0.8 * 0.5) ** 0.5, abs=1e-6)
    assert scores["bleu_4"] < 1e-3 and scores["exact_match"] == 0.0
    perfect = caption_scores({"x": "two red circles on a mat"}, {"x": ["Two red circles on a mat.", "a cat"]})
    assert perfect["bleu_4"] == pytest.approx(1.0, abs=1e-6) and perfect["exact_match"] == 1.0
    with pytest.raises(ValueError, match="no reference"):
        caption_scores({"z": "a cat"}, {"x": ["a cat"]})


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocoevalcap", None)
    monkeypatch.setitem(sys.modules, "pycocoevalcap.bleu.bleu", None)
    with pytest.raises(ImportError, match=r"blip-dual\[eval\]"):
        caption_scores({"x": "a cat"}, {"x": ["a cat"]})


def test_reference_files(tmp_path):
    path = tmp_path / "refs.json"
    path.write_text(json.dumps([{"image": "a/x.jpg", "caption": "one"}, {"image": "a/x.jpg", "caption": ["two"]}]))
    assert read_caption_references(path) == {"a/x.jpg": ["one", "two"]}
    assert match_references(["a/x.jpg", "b/x.jpg", "y.jpg"], {"a/x.jpg": [], "z/y.jpg": []}) == {
        "a/x.jpg": "a/x.jpg", "b/x.jpg": "a/x.jpg", "y.jpg": "z/y.jpg"
    }  # fmt: skip
    path.write_text(json.dumps([{"image": 3, "caption": "x"}]))
    with pytest.raises(ValueError, match="entry 0"):
        read_caption_references(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        read_caption_references(path)
    path.write_text(json.dumps({"annotations": [{"image_id": 5, "caption": "x"}], "images": []}))
    with pytest.raises(ValueError, match="COCO captions"):
        read_caption_references(path)
