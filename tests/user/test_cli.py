"""The `blip` command, run as users run it (a subprocess), in both frameworks."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import PIL.Image
import pytest

from tests.core.test_hub import make_hub_cache
from tests.helpers.images import base_rgb

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for i in range(3):
        PIL.Image.fromarray(base_rgb(50, 60, seed=i)).save(folder / f"img{i}.png")
    (folder / "nested").mkdir()
    PIL.Image.fromarray(base_rgb(40, 40, seed=7)).save(folder / "nested" / "deep.jpg")
    (folder / "broken.jpg").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    return folder


def blip(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "blip_core.cli", *map(str, args)], capture_output=True, text=True, env=env or ENV
    )


def test_caption_folder_jsonl_skips_bad_files(small_models, photos):
    out = blip(
        "caption",
        photos,
        "--model",
        small_models["BlipForConditionalGeneration"],
        "--format",
        "jsonl",
        "--max-new-tokens",
        "4",
        "--batch-size",
        "2",
        "--framework",
        "pt",
    )
    assert out.returncode == 1, out.stderr  # one file failed, the rest went on
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [os.path.basename(r["file"]) for r in records] == ["img0.png", "img1.png", "img2.png", "deep.jpg"]
    assert all(isinstance(r["caption"], str) for r in records)
    assert "skipped" in out.stderr and "broken.jpg" in out.stderr


def test_caption_same_in_tensorflow(small_models, photos):
    args = (
        "caption",
        photos / "img0.png",
        photos / "img1.png",
        "--model",
        small_models["BlipForConditionalGeneration"],
        "--max-new-tokens",
        "5",
        "--num-beams",
        "2",
    )
    pt, tf = blip(*args, "--framework", "pt"), blip(*args, "--framework", "tf")
    assert pt.returncode == tf.returncode == 0, tf.stderr
    assert pt.stdout == tf.stdout and pt.stdout.count("\t") == 2


def test_vqa_csv_and_match_jsonl(small_models, photos):
    out = blip(
        "vqa",
        photos / "img0.png",
        "-q",
        "how many circles?",
        "--model",
        small_models["BlipForQuestionAnswering"],
        "--format",
        "csv",
        "--max-new-tokens",
        "3",
        "--framework",
        "tf",
    )
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == 1 and rows[0]["question"] == "how many circles?" and rows[0]["answer"]
    out = blip(
        "match",
        photos / "img1.png",
        "-t",
        "a cat",
        "a red circle",
        "--model",
        small_models["BlipForImageTextRetrieval"],
        "--format",
        "jsonl",
    )
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 0 and [r["text"] for r in records] == ["a cat", "a red circle"]
    assert all(0 <= r["itm_score"] <= 1 for r in records)


def test_embed_images_and_texts(small_models, photos):
    out = blip(
        "embed",
        photos / "img2.png",
        "--text",
        "a cat",
        "two dogs",
        "--model",
        small_models["BlipForImageTextRetrieval"],
        "--format",
        "jsonl",
    )
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["input"] for r in records][:2] == ["a cat", "two dogs"] and len(records) == 3
    for record in records:
        assert len(record["embedding"]) == 256 and abs(sum(v * v for v in record["embedding"]) - 1) < 1e-3


def test_errors_exit_2_with_one_line(small_models, tmp_path):
    out = blip("caption", tmp_path / "missing.png", "--model", small_models["BlipForConditionalGeneration"])
    assert out.returncode == 2 and out.stderr.strip().endswith("blip: error: no readable images among the inputs")
    out = blip("caption", tmp_path, "--model", tmp_path / "no-model")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


def test_hub_id_from_offline_cache_and_unreachable_hub(small_models, photos, tmp_path):
    files = {p.name: p.read_bytes() for p in small_models["BlipForConditionalGeneration"].iterdir()}
    make_hub_cache(tmp_path / "cache", "Salesforce/blip-small-test", files)
    env = {**ENV, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    out = blip(
        "caption", photos / "img0.png", "--model", "Salesforce/blip-small-test", "--max-new-tokens", "3", env=env
    )
    assert out.returncode == 0, out.stderr
    env = {**ENV, "HF_HUB_OFFLINE": "0", "HF_HUB_CACHE": str(tmp_path / "empty"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    out = blip("caption", photos / "img0.png", "--model", "Salesforce/not-cached", env=env)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "cannot reach the Hugging Face Hub" in out.stderr


def test_no_images_to_work_on_is_exit_2_with_one_line_and_nothing_on_stdout(small_models, photos, tmp_path):
    model = small_models["BlipForConditionalGeneration"]
    (tmp_path / "empty").mkdir()
    out = blip("caption", tmp_path / "empty", "--model", model, "--format", "csv")
    assert out.returncode == 2 and out.stdout == ""
    looked_for = "looked for .bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp"
    assert out.stderr.strip().splitlines() == [f"blip: error: no image files in {tmp_path / 'empty'} ({looked_for})"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"\x89PNG but not really")
    out = blip("vqa", tmp_path / "bad", "-q", "what?", "--model", small_models["BlipForQuestionAnswering"])
    assert (
        out.returncode == 2 and out.stdout == "" and out.stderr.strip().endswith("no readable images among the inputs")
    )
    # an empty folder beside real images is a note, not a failure
    out = blip("caption", tmp_path / "empty", photos / "img0.png", "--model", model, "--max-new-tokens", "2")
    assert out.returncode == 0 and out.stdout.count("\n") == 1 and "blip: note: no image files in" in out.stderr


def test_zero_is_a_value_and_absent_flags_are_not_options():
    """`--seed 0` and `--top-k 0` reach generate (0 == False must not drop them); unset flags do not."""
    from blip_core.cli.generate import generation_options as _generation_options
    from blip_core.cli.main import _parser

    args = _parser().parse_args(
        ["caption", "x.png", "--do-sample", "--seed", "0", "--top-k", "0", "--no-repeat-ngram-size", "2"]
    )
    assert _generation_options(args) == {"do_sample": True, "seed": 0, "top_k": 0, "no_repeat_ngram_size": 2}
    assert _generation_options(_parser().parse_args(["caption", "x.png"])) == {}


def test_a_wrong_checkpoint_is_one_short_line_that_says_what_it_is(small_models, photos):
    out = blip("vqa", photos / "img0.png", "-q", "what?", "--model", small_models["BlipForConditionalGeneration"])
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) <= len("blip: error: ") + 600, lines
    assert "is a BlipForConditionalGeneration; load it with that class (pipeline task 'image-to-text')" in lines[0]
