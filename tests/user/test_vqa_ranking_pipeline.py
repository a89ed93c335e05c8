"""Ranking candidate answers through the processor helpers, `pipeline("visual-question-answering")` and
`blip vqa --answers`, on the embedded demo VQA model (real vocabulary, so [DEC] and [ENC] exist)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from blip_core import BlipProcessor
from blip_core.config.model_constants import DEC_TOKEN_ID, ENC_TOKEN_ID
from blip_core.demo.tasks import ANSWERER, DEMO_MODELS_DIR, held_out
from blip_core.processing.text_cleaning import clean_question
from blip_core.tasks.pipelines import pipeline
from blip_core.tasks.vqa_ranking import question_batch

torch = pytest.importorskip("torch")
DEMO = DEMO_MODELS_DIR / ANSWERER
ANSWERS = ["one", "two", "three", "red", "blue", "green", "circle", "square", "triangle", "gray", "light blue"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def processor():
    return BlipProcessor.from_pretrained(DEMO)


@pytest.fixture(scope="module")
def pipes():
    # float32 in both: left to itself the PyTorch pipeline loads the demo model in the float16 it was saved in
    return {
        fw: pipeline("visual-question-answering", model=str(DEMO), framework=fw, dtype="float32") for fw in ("pt", "tf")
    }


@pytest.fixture(scope="module")
def data():
    return held_out(4, start=500)


def test_tokenize_answers_dec_first_sep_last_padded(processor):
    encoded = processor.tokenize_answers(["yes", "light blue"], return_tensors="np")
    sep = processor.tokenizer.sep_token_id
    words = processor.tokenizer(["yes", "light blue"], add_special_tokens=False)["input_ids"]
    assert encoded["input_ids"].tolist() == [
        [DEC_TOKEN_ID, *words[0], sep] + [0] * (len(words[1]) - len(words[0])),
        [DEC_TOKEN_ID, *words[1], sep],
    ]
    assert encoded["attention_mask"].tolist() == [
        [1] * (len(words[0]) + 2) + [0] * (len(words[1]) - len(words[0])),
        [1] * (len(words[1]) + 2),
    ]
    assert processor.tokenize_answers(["yes"])["input_ids"] == [[DEC_TOKEN_ID, *words[0], sep]]
    assert processor.tokenize_answers(["yes"], return_tensors="pt")["input_ids"].dtype == torch.int64
    for bad, error in (("yes", TypeError), ([], ValueError), (["yes", ""], ValueError), ([3], TypeError)):
        with pytest.raises(error, match="answer"):
            processor.tokenize_answers(bad)


def test_encode_questions_start_token(processor):
    plain = processor.encode_questions(["how many?", "what color is it?"], return_tensors="np")
    original = processor.encode_questions(["how many?", "what color is it?"], text_start_token="[ENC]")
    assert plain["input_ids"][:, 0].tolist() == [processor.tokenizer.cls_token_id] * 2
    assert [row[0] for row in original["input_ids"]] == [ENC_TOKEN_ID] * 2
    assert [row[1:] for row in original["input_ids"]] == plain["input_ids"][:, 1:].tolist()
    with pytest.raises(ValueError, match="text_start_token"):
        processor.encode_questions("q", text_start_token="[DEC]")


def test_original_protocol_needs_enc_in_the_vocabulary(processor):
    small = SimpleNamespace(config=SimpleNamespace(text_config=SimpleNamespace(vocab_size=30522)))
    with pytest.raises(ValueError, match=r"\[ENC\] \(id 30523\)"):
        question_batch(processor, small, ["how many?"], "original")
    with pytest.raises(ValueError, match="protocol must be one of"):
        question_batch(processor, small, ["how many?"], "paper")


def _direct(pipe, image, question: str, protocol: str) -> list[dict]:
    """What the pipeline should return, from the processor and `rank_answers` called here."""
    model, processor = pipe.model, pipe.processor
    if protocol == "original":
        questions = processor.encode_questions(
            [clean_question(question)], text_start_token="[ENC]", truncation=True, max_length=35, return_tensors="np"
        )
    else:
        questions = processor([image], text=[question], return_tensors="np", padding=True)
    candidates = processor.tokenize_answers(ANSWERS, return_tensors="np")
    arguments = {
        "pixel_values": processor(images=[image], return_tensors="np")["pixel_values"],
        "input_ids": questions["input_ids"],
        "attention_mask": questions["attention_mask"],
        "candidate_ids": candidates["input_ids"],
        "candidate_attention_mask": candidates["attention_mask"],
    }
    if type(model).__name__.startswith("TF"):
        out = model.rank_answers(**arguments)
    else:
        with torch.no_grad():
            out = model.rank_answers(**{k: torch.from_numpy(v) for k, v in arguments.items()})
    indices, scores = np.asarray(out.indices)[0], np.asarray(out.scores)[0]
    return [{"answer": ANSWERS[i], "score": float(s)} for i, s in zip(indices, scores, strict=True)]


@pytest.mark.parametrize("protocol", ["transformers", "original"])
def test_pipeline_ranks_like_the_model_in_both_frameworks(pipes, data, protocol):
    question = data.questions[0].upper() + "!!"  # the original protocol cleans it
    results = {}
    for fw, pipe in pipes.items():
        found = pipe(data.images[0], question=question, candidate_answers=ANSWERS, top_k=4, protocol=protocol)
        expected = _direct(pipe, data.images[0], question, protocol)[:4]
        assert [r["answer"] for r in found] == [r["answer"] for r in expected]
        np.testing.assert_allclose([r["score"] for r in found], [r["score"] for r in expected], atol=1e-5)
        results[fw] = found
    assert [r["answer"] for r in results["pt"]] == [r["answer"] for r in results["tf"]]
    np.testing.assert_allclose(
        [r["score"] for r in results["pt"]], [r["score"] for r in results["tf"]], atol=1e-4, rtol=1e-4
    )


def test_pipeline_batches_and_default_top_k(pipes, data):
    pipe = pipes["pt"]
    pairs = [{"image": image, "question": q} for image, q in zip(data.images, data.questions, strict=True)]
    batched = pipe(pairs, candidate_answers=ANSWERS, batch_size=3)
    assert [len(result) for result in batched] == [5] * 4  # transformers' default top_k
    for pair, result in zip(pairs, batched, strict=True):
        alone = pipe(pair["image"], question=pair["question"], candidate_answers=ANSWERS)
        assert [r["answer"] for r in result] == [r["answer"] for r in alone]
        assert all(a["score"] >= b["score"] for a, b in zip(result, result[1:], strict=False))


def test_pipeline_errors(pipes, data):
    pipe, image, question = pipes["pt"], data.images[0], data.questions[0]
    with pytest.raises(TypeError, match="candidate_answers must be a list"):
        pipe(image, question=question, candidate_answers="yes")
    with pytest.raises(ValueError, match="candidate_answers is empty"):
        pipe(image, question=question, candidate_answers=[])
    with pytest.raises(ValueError, match="protocol must be one of"):
        pipe(image, question=question, candidate_answers=ANSWERS, protocol="paper")
    with pytest.raises(TypeError, match="do not apply to candidate_answers"):
        pipe(image, question=question, candidate_answers=ANSWERS, num_beams=3)


def test_blip_vqa_answers_command(pipes, data, tmp_path):
    data.images[1].save(tmp_path / "scene.png")
    (tmp_path / "answers.txt").write_text("\n".join(ANSWERS) + "\n")
    command = [
        sys.executable,
        "-m",
        "blip_core.cli",
        "vqa",
        str(tmp_path / "scene.png"),
        "-q",
        data.questions[1],
        "--answers",
        str(tmp_path / "answers.txt"),
        "--model",
        str(DEMO),
        "--format",
        "jsonl",
    ]
    out = subprocess.run([*command, "--top-k", "3"], capture_output=True, text=True, env=ENV)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    expected = pipes["pt"](data.images[1], question=data.questions[1], candidate_answers=ANSWERS, top_k=3)
    assert [row["answer"] for row in rows] == [r["answer"] for r in expected]
    np.testing.assert_allclose([row["score"] for row in rows], [r["score"] for r in expected], atol=1e-5)
    assert {row["file"] for row in rows} == {str(tmp_path / "scene.png")}
    out = subprocess.run([*command, "--num-beams", "3"], capture_output=True, text=True, env=ENV)
    assert out.returncode == 2 and "do not apply" in out.stderr and not out.stdout
