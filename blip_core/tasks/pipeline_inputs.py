"""How a pipeline call's inputs are read: `transformers`' calling conventions, as (image, text) items.

A call's images come positionally or as `inputs=`, `images=` or `image=`; texts (a prompt, a
question) as the task's keyword. The inputs' shape decides the result's shape, as in `transformers`:
one input gives one result, a list gives a list, and a generator or a dataset (a `torch` Dataset,
`KeyDataset`, a `datasets` Dataset) gives an iterator that runs the model only as it is consumed.
Framework-neutral: no torch or tensorflow import.
"""

from __future__ import annotations

import collections.abc
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from blip_core.processing.image_loading import is_encoded_image

IMAGE_NAMES = ("inputs", "images", "image")


@dataclass(frozen=True)
class Item:
    """One model input: an image and, for prompted captioning and VQA, its text."""

    image: Any
    text: str | None = None


@dataclass
class Request:
    """A call's items and how results are handed back.

    shape: "single" (one result), "list" (a list of results), "flat" (image-text-to-text's flat
    list of records for a list of images) or "stream" (an iterator of results; `items` is lazy).
    """

    shape: str
    items: list[Item] | Iterator[Item]


class KeyDataset:
    """`transformers.pipelines.pt_utils.KeyDataset`: the `key` field of each row of `dataset`."""

    def __init__(self, dataset: Any, key: str) -> None:
        self.dataset, self.key = dataset, key

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index][self.key]


def take_images(args: tuple, kwargs: dict[str, Any], task: str) -> tuple[Any, tuple]:
    """The call's images (positional, `inputs=`, `images=` or `image=`) and the positional rest.

    Raises:
        TypeError: the images given more than once.
    """
    given = {name: kwargs.pop(name) for name in IMAGE_NAMES if name in kwargs}
    if args:
        given = {"the first positional argument": args[0], **given}
        args = args[1:]
    if len(given) > 1:
        raise TypeError(f"{task}: images given twice, as {' and '.join(given)}; give them once")
    return (next(iter(given.values())) if given else None), args


def is_dataset(value: Any) -> bool:
    """A torch Dataset, a KeyDataset or a `datasets` Dataset (sized, indexed rows)."""
    if isinstance(value, KeyDataset):
        return True
    torch_data = sys.modules.get("torch.utils.data")
    if torch_data is not None and isinstance(value, torch_data.Dataset):
        return True
    return type(value).__module__.split(".", 1)[0] == "datasets"


def is_stream(value: Any) -> bool:
    """Inputs to stream lazily: a generator or other iterator, or a dataset (a file object is one image)."""
    return _is_iterator(value) or is_dataset(value)


def _is_iterator(value: Any) -> bool:
    """A generator or other iterator of inputs; a binary file object iterates its lines but is one image."""
    return isinstance(value, collections.abc.Iterator) and not is_encoded_image(value)


def _rows(value: Any) -> Iterator[Any]:
    if isinstance(value, collections.abc.Iterator):
        return value
    if isinstance(value, collections.abc.Iterable) and not isinstance(value, KeyDataset):
        return iter(value)
    return (value[index] for index in range(len(value)))


def check_image(value: Any, where: str) -> Any:
    """`value` if it can be an image; lists, dicts and text-free nonsense are a ValueError naming `where`."""
    if isinstance(value, (list, tuple)):
        raise ValueError(f"{where} is a {type(value).__name__}: give one image per item, not a nested list")
    if isinstance(value, dict):
        keys = sorted(map(str, value))
        raise ValueError(f"{where} is a dict with keys {keys}: this task takes images (use KeyDataset for rows)")
    if value is None:
        raise ValueError(f"{where} is None: expected an image")
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}: {value!r:.60}")
    return value


def _is_text_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def images_request(images: Any, task: str, texts: Any = None) -> Request:
    """Images alone, or each with a text (one for all, or one per image): image-to-text, matching, zero-shot.

    Raises:
        ValueError: no images, a nested list, or texts that do not pair with the images.
    """
    if images is None:
        raise ValueError(f"{task} needs images: pass them positionally or as images=")
    if is_stream(images):
        if _is_text_list(texts):
            raise ValueError(f"{task}: one text per image needs a list of images, not a stream")
        text = None if texts is None else _text(texts, "the text")
        rows = _rows(images)
        return Request("stream", (Item(check_image(row, f"item {i}"), text) for i, row in enumerate(rows)))
    if isinstance(images, (list, tuple)):
        if _is_text_list(texts) and len(texts) != len(images):
            raise ValueError(f"{task}: got {len(images)} images and {len(texts)} texts; give one text per image")
        per = list(texts) if _is_text_list(texts) else [texts] * len(images)
        items = [
            Item(check_image(image, f"images[{i}]"), None if t is None else _text(t, f"texts[{i}]"))
            for i, (image, t) in enumerate(zip(images, per, strict=True))
        ]
        return Request("list", items)
    if _is_text_list(texts):
        raise ValueError(f"{task}: got one image and {len(texts)} texts; give a list of images, one per text")
    return Request("single", [Item(check_image(images, "the image"), None if texts is None else _text(texts, "text"))])


def _from_dict(row: Any, image_keys: tuple[str, ...], text_key: str, where: str) -> Item:
    if not isinstance(row, dict):
        raise ValueError(f"{where} must be a dict with {image_keys[0]!r} and {text_key!r} keys, got {row!r:.60}")
    image_key = next((key for key in image_keys if key in row), None)
    if image_key is None or text_key not in row:
        raise ValueError(f"{where} must have {image_keys[0]!r} and {text_key!r} keys, got {sorted(map(str, row))}")
    return Item(check_image(row[image_key], f"{where}[{image_key!r}]"), _text(row[text_key], f"{where}[{text_key!r}]"))


def _dict_request(inputs: Any, image_keys: tuple[str, ...], text_key: str, single_shape: str) -> Request:
    if isinstance(inputs, dict):
        return Request(single_shape, [_from_dict(inputs, image_keys, text_key, "the input")])
    if isinstance(inputs, (list, tuple)):
        return Request("list", [_from_dict(row, image_keys, text_key, f"inputs[{i}]") for i, row in enumerate(inputs)])
    rows = _rows(inputs)
    return Request("stream", (_from_dict(row, image_keys, text_key, f"item {i}") for i, row in enumerate(rows)))


def vqa_request(image: Any, question: Any) -> Request:
    """`transformers`' VQA conventions: (image, question), dicts, lists of them, images x questions.

    A list of questions with a list (or dataset) of images asks every question of every image,
    question by question, as `transformers` pairs them.

    Raises:
        ValueError: no question, or inputs that are neither images nor {"image", "question"} dicts.
    """
    if question is None:
        if image is None:
            raise ValueError("visual-question-answering needs an image and a question: pipe(image, question='...')")
        if isinstance(image, dict) or is_stream(image) or _is_dict_list(image):
            return _dict_request(image, ("image",), "question", "single")
        raise ValueError("visual-question-answering needs a question: pipe(image, question='...')")
    if image is None:
        raise ValueError("visual-question-answering needs an image for the question: pipe(image, question='...')")
    questions = list(question) if _is_text_list(question) else None
    if questions is not None:
        for i, text in enumerate(questions):
            _text(text, f"question[{i}]")
    if is_dataset(image) and not _is_iterator(image):
        image = list(_rows(image))  # transformers pairs a dataset's images with the questions eagerly
    if _is_iterator(image):
        if questions is not None:
            raise ValueError("visual-question-answering: a list of questions needs a list of images, not a generator")
        text = _text(question, "question")
        return Request("stream", (Item(check_image(row, f"item {i}"), text) for i, row in enumerate(image)))
    images = list(image) if isinstance(image, (list, tuple)) else None
    if images is None:
        if questions is None:
            return Request("single", [Item(check_image(image, "the image"), _text(question, "question"))])
        return Request("list", [Item(check_image(image, "the image"), text) for text in questions])
    checked = [check_image(one, f"image[{i}]") for i, one in enumerate(images)]
    texts = questions if questions is not None else [_text(question, "question")]
    return Request("list", [Item(one, text) for text in texts for one in checked])


def _is_dict_list(value: Any) -> bool:
    """A list of dicts (an empty list counts: no inputs, no results)."""
    return isinstance(value, (list, tuple)) and all(isinstance(row, dict) for row in value)


def _is_chat(value: Any) -> bool:
    rows = value[0] if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)) else value
    return isinstance(rows, (list, tuple)) and bool(rows) and isinstance(rows[0], dict) and "role" in rows[0]


def prompted_request(images: Any, text: Any) -> Request:
    """image-text-to-text: (images, text) as `transformers` reads them for BLIP, or {"images", "text"} dicts.

    A list of images with one text prompts each image with it; with a list of texts, pairwise.
    Results for a list of images come back flat (one record per image), as in `transformers`.

    Raises:
        ValueError: chat messages (BLIP has no chat template), text without an image, no text.
    """
    if _is_chat(text) or (text is None and _is_chat(images)):
        raise ValueError(
            "image-text-to-text: BLIP has no chat template; pass an image and a plain text prompt, "
            "e.g. pipe(image, text='a photo of')"
        )
    if images is None:
        if text is None:
            raise ValueError("image-text-to-text needs images and a text prompt: pipe(image, text='a photo of')")
        raise ValueError("image-text-to-text: BLIP generates only from an image; pass images= with the text")
    if text is None:
        if isinstance(images, dict) or is_stream(images) or _is_dict_list(images):
            return _dict_request(images, ("images", "image"), "text", "single")
        raise ValueError("You must provide text for this pipeline: pipe(image, text='a photo of')")
    if isinstance(images, (list, tuple)) and not _is_text_list(text):
        request = images_request(images, "image-text-to-text", text)
        return Request("flat", request.items)
    if _is_text_list(text) and not isinstance(images, (list, tuple)) and not is_stream(images):
        images = [images] * len(text)
    request = images_request(images, "image-text-to-text", text)
    return Request("flat" if request.shape == "list" else request.shape, request.items)


def as_label_list(labels: Any) -> list[str]:
    """Zero-shot candidate labels as a list of strings (one string is one label).

    Raises:
        ValueError: none given, or a label that is not a string.
    """
    if labels is None:
        raise ValueError("zero-shot-image-classification needs candidate_labels=[...]")
    values = [labels] if isinstance(labels, str) else list(labels) if isinstance(labels, Iterable) else None
    if not values:
        raise ValueError(f"candidate_labels must be a non-empty list of strings, got {labels!r:.60}")
    return [_text(label, f"candidate_labels[{i}]") for i, label in enumerate(values)]
