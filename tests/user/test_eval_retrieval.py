"""`blip eval retrieval` run as users run it (a subprocess): Karpathy-style annotations and an image folder in,
the nine `itm_eval` numbers out, equal to `retrieve` + `retrieval_recalls` in-process, in both frameworks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from blip_core import BlipProcessor
from blip_core.tasks.retrieval import retrieve
from blip_core.tasks.retrieval_metrics import METRIC_NAMES, read_annotations, retrieval_recalls
from tests.parity.test_retrieval_twins import _images, write_seeded_retrieval

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
CAPTIONS = [["a red square", "A RED SQUARE!"], ["two circles"], ["a dog on a beach", "a dog", "the beach"], ["a cat"]]


def blip(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "blip_core.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_retrieval")
    (root / "images" / "sub").mkdir(parents=True)
    records = []
    for index, (image, captions) in enumerate(zip(_images(4, 40), CAPTIONS, strict=True)):
        name = f"sub/{index}.png"
        image.save(root / "images" / name)
        records.append({"image": name, "caption": captions})
    (root / "test.json").write_text(json.dumps(records))
    return root, write_seeded_retrieval(root / "model")


@pytest.mark.parametrize(("framework", "protocol"), [("pt", "original"), ("tf", "original"), ("pt", "transformers")])
def test_metrics_equal_the_library(corpus, framework, protocol):
    root, model_folder = corpus
    args = ["--annotations", root / "test.json", "--images", root / "images", "--model", model_folder]
    done = blip("eval", "retrieval", *args, "--k", "2", "--protocol", protocol, "--framework", framework)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert (got["images"], got["texts"], got["k"], got["protocol"]) == (4, 7, 2, protocol)
    import blip_torch

    truth = read_annotations(root / "test.json")
    model = blip_torch.BlipForImageTextRetrieval.from_pretrained(model_folder)
    paths = [str(root / "images" / name) for name in truth.images]
    scores = retrieve(model, BlipProcessor.from_pretrained(model_folder), paths, truth.texts, k=2, protocol=protocol)
    expected = retrieval_recalls(scores.image_to_text, scores.text_to_image, truth)
    assert {name: got[name] for name in METRIC_NAMES} == pytest.approx(expected)


def test_errors_are_one_line_and_exit_2(corpus, tmp_path):
    root, model_folder = corpus
    missing = tmp_path / "ann.json"
    missing.write_text(json.dumps([{"image": "nope.png", "caption": ["x"]}]))
    cases = {
        "not under": ["--annotations", missing, "--images", root / "images"],
        "not a folder": ["--annotations", root / "test.json", "--images", tmp_path / "absent"],
        "--k must be at least 1": ["--annotations", root / "test.json", "--images", root / "images", "--k", "0"],
        "No such file": ["--annotations", tmp_path / "absent.json", "--images", root / "images"],
    }
    for message, args in cases.items():
        done = blip("eval", "retrieval", *args, "--model", model_folder)
        assert done.returncode == 2, (message, done.stderr)
        assert done.stdout == ""
        lines = [line for line in done.stderr.splitlines() if line.startswith("blip: error")]
        assert len(lines) == 1 and message in lines[0], done.stderr
