"""The training and held-out data of `blip finetune`, read into `TrainingExamples` (framework-neutral).

- captioning and retrieval: a folder with `captions.jsonl` (`{"file": ..., "caption": ...}` per line; an image may
  have several lines, one per caption) or `captions.csv` (`file,caption`); or Parquet files / WebDataset `.tar`
  shards as the bulk commands read them (`blip_core.bulk.sources`: image bytes with their text; needs
  `blip-dual[scale]`), each record with a text;
- VQA: a folder with `questions.jsonl`, one question per line: `{"file", "question", "answer"}`, or `"answers"`
  (the annotators' answers, weighted by their share as VQA v2 does), or `"answers"` with `"weights"`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from blip_core.training.data import read_captioned_folder
from blip_core.training.step_batches import TrainingExamples

QUESTIONS_FILE = "questions.jsonl"


def read_examples(task: str, data: str | os.PathLike | list) -> TrainingExamples:
    """The examples of `task` in `data` (see the module docstring). Raises FileNotFoundError for a missing path,
    ValueError for a folder or file that holds no usable examples (naming the file and line), ImportError naming
    `blip-dual[scale]` when Parquet or WebDataset input needs pyarrow/webdataset."""
    paths = [Path(item) for item in (data if isinstance(data, (list, tuple)) else [data])]
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"training data {path} does not exist")
    if task == "vqa":
        if len(paths) != 1 or not (paths[0] / QUESTIONS_FILE).is_file():
            raise ValueError(f"VQA data must be one folder with {QUESTIONS_FILE}; got {', '.join(map(str, paths))}")
        return _read_questions(paths[0])
    if (
        len(paths) == 1
        and paths[0].is_dir()
        and any((paths[0] / n).is_file() for n in ("captions.jsonl", "captions.csv"))
    ):
        pairs = read_captioned_folder(paths[0])
        if not pairs:
            raise ValueError(f"{paths[0]} has no captioned images")
        keys = [path.relative_to(paths[0]).as_posix() for path, _ in pairs]
        return TrainingExamples(task, [str(path) for path, _ in pairs], [text for _, text in pairs], image_keys=keys)
    return _read_records(task, paths)


def _read_records(task: str, paths: list[Path]) -> TrainingExamples:
    from blip_core.bulk.sources import open_source

    source = open_source([str(path) for path in paths] if len(paths) > 1 else str(paths[0]))
    images, texts, keys = [], [], []
    for record in source:
        if record.image is None and record.path is None:
            raise ValueError(f"record {record.key!r} of {paths[0]} has no image")
        if not record.text or not record.text.strip():
            raise ValueError(f"record {record.key!r} of {paths[0]} has no caption: every training record needs a text")
        images.append(record.image if record.image is not None else record.path)
        texts.append(record.text)
        keys.append(record.path or hashlib.sha1(record.image).hexdigest())  # one image, several captions: one key
    if not texts:
        raise ValueError(f"{', '.join(map(str, paths))} holds no records")
    return TrainingExamples(task, images, texts, image_keys=keys)


def _read_questions(folder: Path) -> TrainingExamples:
    path = folder / QUESTIONS_FILE
    images, questions, answers, weights = [], [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = _question_record(path, number, line)
        image = folder / record["file"]
        if not image.is_file():
            raise ValueError(f"{path} line {number}: image {image} does not exist")
        images.append(str(image))
        questions.append(record["question"])
        answers.append(record["answers"])
        weights.append(record.get("weights"))
    if not questions:
        raise ValueError(f"{path} holds no questions")
    given = [w is not None for w in weights]
    if any(given) and not all(given):
        raise ValueError(f"{path}: give 'weights' on every line or on none")
    return TrainingExamples("vqa", images, questions, answers, weights if all(given) else None)


def _question_record(path: Path, number: int, line: str) -> dict[str, Any]:
    expected = f'{path} line {number}: expected {{"file": ..., "question": ..., "answer": ... or "answers": [...]}}'
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        raise ValueError(expected) from None
    if not isinstance(record, dict) or not isinstance(record.get("file"), str):
        raise ValueError(expected)
    if not isinstance(record.get("question"), str) or not record["question"].strip():
        raise ValueError(expected)
    answers = record.get("answers", [record["answer"]] if "answer" in record else None)
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise ValueError(expected)
    weights = record.get("weights")
    if weights is not None and (
        not isinstance(weights, list)
        or len(weights) != len(answers)
        or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights)
    ):
        raise ValueError(f"{path} line {number}: 'weights' must be one number >= 0 per answer")
    return {"file": record["file"], "question": record["question"], "answers": answers, "weights": weights}
