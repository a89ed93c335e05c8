"""Reading VQA evaluation data: the questions with their reference answers, and candidate answer lists.

Annotation files (one of):
- JSON lines: `{"image": "relative/path.jpg", "question": "...", "answers": ["...", x10]}` per line;
- a JSON list of such records (the original BLIP's `vqa_val.json` style; `"answer"` is accepted for `"answers"`);
- VQA v2 JSON: `{"annotations": [{"question_id", "image_id", "answers": [{"answer": ...}, ...]}, ...]}`, the
  questions from `{"questions": [{"question_id", "question"}, ...]}` (the same file or `questions_file`);
  images found by id (`COCO_val2014_000000262148.jpg`, `262148.jpg`, ...) under the image folder.

Framework-neutral.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class VqaQuestion:
    """One evaluated question: its image path (relative to the image folder), text and reference answers."""

    image: str
    question: str
    answers: list[str]
    question_id: Any = None


def _load(path: str | os.PathLike) -> Any:
    text = Path(path).read_text(encoding="utf-8")
    try:
        if Path(path).suffix.lower() == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{os.fspath(path)!r} is not valid JSON: {error}") from None


def _record(index: int, record: Any) -> VqaQuestion:
    if not isinstance(record, dict):
        raise ValueError(f"annotation {index} is not an object: {record!r:.80}")
    answers = record.get("answers", record.get("answer"))
    if isinstance(answers, list) and answers and all(isinstance(a, dict) for a in answers):
        answers = [a.get("answer") for a in answers]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise ValueError(f"annotation {index} needs 'answers': a non-empty list of strings")
    for key in ("image", "question"):
        if not isinstance(record.get(key), str):
            raise ValueError(f"annotation {index} needs {key!r}: a string")
    return VqaQuestion(record["image"], record["question"], answers, record.get("question_id", index))


def read_vqa_annotations(
    path: str | os.PathLike, images: str | os.PathLike, questions_file: str | os.PathLike | None = None
) -> list[VqaQuestion]:
    """The questions of an annotation file (see the module docstring), in file order.

    Raises:
        OSError: a file cannot be read. ValueError: not JSON, not one of the formats, an image id without a file.
    """
    data = _load(path)
    if isinstance(data, dict) and "annotations" in data:
        texts = data if questions_file is None else _load(questions_file)
        return _vqa_v2(data["annotations"], texts, Path(images))
    if not isinstance(data, list):
        raise ValueError(f"{os.fspath(path)!r}: expected JSON lines, a JSON list or VQA v2 annotations")
    if not data:
        raise ValueError(f"{os.fspath(path)!r} holds no questions")
    return [_record(index, record) for index, record in enumerate(data)]


def _vqa_v2(annotations: Any, texts: Any, images: Path) -> list[VqaQuestion]:
    if not isinstance(texts, dict) or not isinstance(texts.get("questions"), list):
        raise ValueError("VQA v2 annotations need their questions: pass the questions file ({'questions': [...]})")
    asked = {item.get("question_id"): item.get("question") for item in texts["questions"] if isinstance(item, dict)}
    found = _images_by_id(images)
    result = []
    for index, item in enumerate(annotations if isinstance(annotations, list) else []):
        if not isinstance(item, dict) or item.get("question_id") not in asked:
            raise ValueError(f"annotation {index} has no question_id with a question in the questions file")
        if item.get("image_id") not in found:
            raise ValueError(f"annotation {index}: no image file for image_id {item.get('image_id')!r} in {images}")
        record = {"image": found[item["image_id"]], "question": asked[item["question_id"]], **item}
        result.append(_record(index, record))
    if not result:
        raise ValueError("the VQA v2 annotation file holds no annotations")
    return result


def _images_by_id(folder: Path) -> dict[int, str]:
    """image id -> path relative to `folder`, from the last run of digits in each image file's name."""
    found = {}
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        digits = re.findall(r"\d+", path.stem)
        if path.suffix.lower() in IMAGE_SUFFIXES and digits:
            found.setdefault(int(digits[-1]), str(path.relative_to(folder)))
    return found


def read_answer_list(path: str | os.PathLike) -> list[str]:
    """Candidate answers: a JSON list of strings (the original's `answer_list.json`) or one answer per line.

    Raises OSError (unreadable), ValueError (no answers, or a JSON file that is not a list of strings)."""
    text = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix.lower() == ".json":
        try:
            answers = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"answer list {os.fspath(path)!r} is not valid JSON: {error}") from None
        if not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
            raise ValueError(f"answer list {os.fspath(path)!r} must be a JSON list of non-empty strings")
    else:
        answers = [line.strip() for line in text.splitlines() if line.strip()]
    if not answers:
        raise ValueError(f"answer list {os.fspath(path)!r} holds no answers")
    return answers
