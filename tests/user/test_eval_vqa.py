"""VQA accuracy (the official metric's rules, on hand-made cases with known values), the annotation readers,
and `blip eval vqa` run as users run it (a subprocess) on the embedded demo VQA model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from blip_core.demo.tasks import ANSWERER, DEMO_MODELS_DIR, held_out
from blip_core.tasks.vqa_accuracy import (
    normalize_answer,
    normalize_punctuation,
    question_accuracy,
    vqa_accuracy,
)
from blip_core.tasks.vqa_annotations import read_answer_list, read_vqa_annotations

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
DEMO = DEMO_MODELS_DIR / ANSWERER


@pytest.mark.parametrize(
    ("prediction", "references", "expected"),
    [
        ("2", ["2"] * 10, 1.0),
        ("2", ["2"] * 4 + ["3"] * 6, 1.0),  # 3 of the other 9 match in every subset
        ("2", ["2"] * 3 + ["3"] * 7, 0.9),  # (3 x 2/3 + 7 x 1) / 10
        ("2", ["2"] * 2 + ["3"] * 8, 0.6),  # (2 x 1/3 + 8 x 2/3) / 10
        ("2", ["2"] + ["3"] * 9, 0.3),  # (0 + 9 x 1/3) / 10
        ("2", ["3"] * 10, 0.0),
        ("Two", ["2"] * 10, 1.0),  # number words become digits, case is folded
        ("a dog", ["dog"] * 10, 1.0),  # articles go
        ("  yes\n", ["yes"] * 10, 1.0),
        ("yes.", ["yes"] * 10, 1.0),  # a full stop not before a digit goes
        ("2.5", ["2.5"] * 10, 1.0),  # ... one before a digit stays
        ("dont", ["don\u2019t"] * 10, 1.0),  # contractions are restored (typographic apostrophe)
        ("1,000", ["1000"] * 10, 1.0),  # digit,digit: punctuation deleted, not spaced
        ("dog.", ["dog."] * 9 + ["cat"], 1.0),  # references differ: their punctuation is normalised too
        ("dog", ["dog."] * 10, 0.0),  # all equal: references are used as given
        ("black/white", ["black white"] * 10, 1.0),  # a mark inside a word becomes a space
    ],
)
def test_question_accuracy_known_values(prediction, references, expected):
    assert question_accuracy(prediction, references) == pytest.approx(expected, abs=1e-12)


def test_normalisation_rules():
    assert normalize_punctuation("what? yes") == "what yes"  # a mark beside a space is deleted
    assert normalize_punctuation("a?b") == "a b"
    assert normalize_answer("The Three Dogs!") == "3 dogs!"  # '!' is not among the official marks
    assert normalize_answer("None") == "0"


def test_references_normalised_on_request():
    assert question_accuracy("three", ["three"] * 10) == 0.0  # official: "3" against references used as given
    assert question_accuracy("three", ["three"] * 10, normalize_references=True) == 1.0
    assert question_accuracy("the dog", ["Dog"] * 2 + ["cat"] * 8, normalize_references=True) == pytest.approx(0.6)
    assert vqa_accuracy(["3"], [["Three."] * 10], normalize_references=True) == 1.0


def test_mean_accuracy_and_errors():
    assert vqa_accuracy(["2", "3"], [["2"] * 10, ["2"] * 2 + ["3"] * 8]) == pytest.approx((1.0 + 1.0) / 2)
    assert vqa_accuracy(["2", "cat"], [["2"] * 3 + ["1"] * 7, ["dog"] * 10]) == pytest.approx(0.45)
    with pytest.raises(ValueError, match="2 predictions for 1 questions"):
        vqa_accuracy(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="reference answers"):
        question_accuracy("a", [])
    with pytest.raises(TypeError, match="must be a string"):
        question_accuracy(3, ["3"])


def test_annotation_formats(tmp_path):
    (tmp_path / "COCO_val2014_000000000042.jpg").write_bytes(b"")
    (tmp_path / "7.png").write_bytes(b"")
    lines = tmp_path / "a.jsonl"
    lines.write_text(json.dumps({"image": "7.png", "question": "q?", "answers": ["x"] * 10}) + "\n\n")
    listed = tmp_path / "a.json"
    listed.write_text(json.dumps([{"image": "7.png", "question": "q?", "answer": ["y", "z"], "question_id": 5}]))
    v2 = tmp_path / "v2.json"
    v2.write_text(json.dumps({"annotations": [{"question_id": 9, "image_id": 42, "answers": [{"answer": "w"}] * 10}]}))
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps({"questions": [{"question_id": 9, "image_id": 42, "question": "what?"}]}))
    first = read_vqa_annotations(lines, tmp_path)[0]
    assert (first.image, first.question, first.answers, first.question_id) == ("7.png", "q?", ["x"] * 10, 0)
    second = read_vqa_annotations(listed, tmp_path)[0]
    assert (second.answers, second.question_id) == (["y", "z"], 5)
    third = read_vqa_annotations(v2, tmp_path, questions)[0]
    assert (third.image, third.question, third.answers) == ("COCO_val2014_000000000042.jpg", "what?", ["w"] * 10)
    with pytest.raises(ValueError, match="pass the questions file"):
        read_vqa_annotations(v2, tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"image": "7.png", "question": "q?"}) + "\n")
    with pytest.raises(ValueError, match="annotation 0 needs 'answers'"):
        read_vqa_annotations(bad, tmp_path)


def test_answer_lists(tmp_path):
    (tmp_path / "a.txt").write_text("yes\n\n no \n2\n")
    (tmp_path / "a.json").write_text('["yes", "no"]')
    (tmp_path / "bad.json").write_text('{"yes": 1}')
    assert read_answer_list(tmp_path / "a.txt") == ["yes", "no", "2"]
    assert read_answer_list(tmp_path / "a.json") == ["yes", "no"]
    with pytest.raises(ValueError, match="JSON list of non-empty strings"):
        read_answer_list(tmp_path / "bad.json")


def blip(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "blip_core.cli", *map(str, args)], capture_output=True, text=True, env=ENV
    )


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    """Held-out demo images, their questions, the candidate answers, and each question's demo-model answer."""
    from blip_core.tasks.pipelines import pipeline

    root = tmp_path_factory.mktemp("vqa_eval")
    data = held_out(8, start=300)
    candidates = sorted(set(held_out(200).answers))
    (root / "answers.txt").write_text("\n".join(candidates) + "\n")
    pipe = pipeline("visual-question-answering", model=str(DEMO), framework="pt")
    ranked = []
    for i, (image, question) in enumerate(zip(data.images, data.questions, strict=True)):
        image.save(root / f"{i}.png")
        ranked.append(pipe(image, question=question, candidate_answers=candidates, top_k=1)[0]["answer"])
    return root, data, ranked


def test_eval_vqa_rank_mode_scores_known_accuracy(demo_set):
    """References are the model's own ranked answer for the first 5 questions and another candidate for the
    last 3, so the accuracy must be exactly 5/8."""
    root, data, ranked = demo_set
    with open(root / "ann.jsonl", "w") as file:
        for i, (question, answer) in enumerate(zip(data.questions, ranked, strict=True)):
            reference = answer if i < 5 else ("zzz" if answer != "zzz" else "yyy")
            file.write(json.dumps({"image": f"{i}.png", "question": question, "answers": [reference] * 10}) + "\n")
    for framework in ("pt", "tf"):
        out = blip(
            "eval",
            "vqa",
            "--annotations",
            root / "ann.jsonl",
            "--images",
            root,
            "--mode",
            "rank",
            "--normalize-references",
            "--answers",
            root / "answers.txt",
            "--model",
            DEMO,
            "--framework",
            framework,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {
            "vqa_accuracy": 62.5,
            "questions": 8,
            "mode": "rank",
            "protocol": "transformers",
        }


def test_eval_vqa_generate_writes_predictions_and_refuses_to_overwrite(demo_set, tmp_path):
    root, data, _ = demo_set
    with open(root / "gen.jsonl", "w") as file:
        for i, (question, answer) in enumerate(zip(data.questions, data.answers, strict=True)):
            file.write(json.dumps({"image": f"{i}.png", "question": question, "answers": [answer] * 10}) + "\n")
    predictions = tmp_path / "predictions.jsonl"
    args = [
        "eval",
        "vqa",
        "--annotations",
        root / "gen.jsonl",
        "--images",
        root,
        "--model",
        DEMO,
        "--protocol",
        "original",
        "--normalize-references",
        "--predictions",
        predictions,
    ]
    out = blip(*args)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [row["question"] for row in rows] == data.questions
    expected = sum(row["answer"] == answer for row, answer in zip(rows, data.answers, strict=True)) / 8
    assert result == {
        "vqa_accuracy": round(100 * expected, 2),
        "questions": 8,
        "mode": "generate",
        "protocol": "original",
    }
    again = blip(*args)
    assert again.returncode == 2 and "exists; pass --overwrite" in again.stderr and not again.stdout
    assert [json.loads(line) for line in predictions.read_text().splitlines()] == rows  # kept


def test_eval_vqa_usage_errors(demo_set):
    root, _, _ = demo_set
    out = blip("eval", "vqa", "--annotations", root / "gen.jsonl", "--images", root, "--mode", "rank")
    assert out.returncode == 2 and "--mode rank needs --answers" in out.stderr
    out = blip("eval", "vqa", "--annotations", root / "missing.jsonl", "--images", root, "--model", DEMO)
    assert out.returncode == 2 and "missing.jsonl" in out.stderr and len(out.stderr.strip().splitlines()) == 1
