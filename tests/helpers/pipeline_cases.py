"""Pipeline call forms recorded from `transformers` 4.57.6 and replayed on blip_core's pipelines.

Each case names a task, a model (see `pipeline_models`), the options given to `pipeline(...)` and
how the pipe is called. The golden script runs them through `transformers.pipeline`, the tests
through `blip_core.pipeline` in both frameworks; `plain` turns either result (lists, iterators,
tensors) into JSON-able data with the shape kept.
"""

from __future__ import annotations

import collections.abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import PIL.Image

from blip_core.demo.tasks import held_out

LONG_QUESTION = "what color is the background of this picture?"


@dataclass
class Env:
    """What a call is built from: images, questions, a saved image's path and a KeyDataset class."""

    images: list[PIL.Image.Image]
    questions: list[str]
    path: str
    key_dataset: type

    def rows(self, count: int) -> list[dict[str, Any]]:
        """Dataset rows, as a `datasets` Dataset yields them."""
        return [{"image": image, "index": i} for i, image in enumerate(self.images[:count])]


def make_env(folder: Any, key_dataset: type) -> Env:
    """The held-out demo images 4..7, their questions, and image 4 saved as PNG in `folder`."""
    held = held_out(4, 4)
    path = folder / "held_out_4.png"
    held.images[0].save(path)
    return Env(list(held.images), list(held.questions), str(path), key_dataset)


@dataclass(frozen=True)
class Case:
    name: str
    task: str
    model: str
    call: Callable[[Env], tuple[tuple, dict]]
    init: dict[str, Any] = field(default_factory=dict)


F32 = {"dtype": "float32"}


def _gen(values: list) -> collections.abc.Iterator:
    return (value for value in values)


CASES = [
    # image-to-text
    Case("cap_single", "image-to-text", "caption", lambda e: ((e.images[0],), {}), F32),
    Case("cap_list", "image-to-text", "caption", lambda e: ((e.images,), {}), F32),
    Case("cap_list_batch3", "image-to-text", "caption", lambda e: ((e.images,), {"batch_size": 3}), F32),
    Case("cap_images_kw", "image-to-text", "caption", lambda e: ((), {"images": e.images[1]}), F32),
    Case("cap_inputs_kw", "image-to-text", "caption", lambda e: ((), {"inputs": e.images[2]}), F32),
    Case("cap_generator", "image-to-text", "caption", lambda e: ((_gen(e.images[:3]),), {}), F32),
    Case("cap_generator_batch2", "image-to-text", "caption", lambda e: ((_gen(e.images),), {"batch_size": 2}), F32),
    Case("cap_key_dataset", "image-to-text", "caption", lambda e: ((e.key_dataset(e.rows(3), "image"),), {}), F32),
    Case(
        "cap_generate_kwargs",
        "image-to-text",
        "caption",
        lambda e: ((e.images[0],), {"generate_kwargs": {"max_new_tokens": 3}}),
        F32,
    ),
    Case("cap_max_new_tokens", "image-to-text", "caption", lambda e: ((e.images[3],), {"max_new_tokens": 2}), F32),
    Case("cap_prompt", "image-to-text", "caption", lambda e: ((e.images[0],), {"prompt": "a picture of"}), F32),
    Case(
        "cap_beams_two_sequences",
        "image-to-text",
        "caption",
        lambda e: ((e.images[0],), {"generate_kwargs": {"num_beams": 3, "num_return_sequences": 2}}),
        F32,
    ),
    Case(
        "cap_options_at_construction",
        "image-to-text",
        "caption",
        lambda e: ((e.images[1:3],), {}),
        {**F32, "max_new_tokens": 4, "num_beams": 2},
    ),
    Case(
        "cap_prompt_at_construction",
        "image-to-text",
        "caption",
        lambda e: ((e.images[0],), {}),
        {**F32, "prompt": "there are"},
    ),
    Case("cap_empty_list", "image-to-text", "caption", lambda e: (([],), {}), F32),
    Case("cap_path", "image-to-text", "caption", lambda e: ((e.path,), {"timeout": 5.0}), F32),
    Case("cap_default_dtype", "image-to-text", "caption", lambda e: ((e.images,), {})),
    Case(
        "cap_torch_dtype_cpu",
        "image-to-text",
        "caption",
        lambda e: ((e.images[2],), {}),
        {"torch_dtype": "float32", "device": -1},
    ),
    Case("cap_device_string", "image-to-text", "caption", lambda e: ((e.images[3],), {}), {**F32, "device": "cpu"}),
    # visual-question-answering
    Case(
        "vqa_seed_form",
        "visual-question-answering",
        "vqa",
        lambda e: ((), {"question": e.questions[0], "image": e.images[0]}),
        F32,
    ),
    Case("vqa_positional", "vqa", "vqa", lambda e: ((e.images[1], e.questions[1]), {}), F32),
    Case(
        "vqa_dict",
        "visual-question-answering",
        "vqa",
        lambda e: (({"image": e.images[2], "question": e.questions[2]},), {}),
        F32,
    ),
    Case(
        "vqa_dict_list",
        "visual-question-answering",
        "vqa",
        lambda e: (([{"image": e.images[i], "question": e.questions[i]} for i in (3, 0)],), {}),
        F32,
    ),
    Case(
        "vqa_images_one_question",
        "visual-question-answering",
        "vqa",
        lambda e: ((e.images,), {"question": e.questions[3]}),
        F32,
    ),
    Case(
        "vqa_image_questions",
        "visual-question-answering",
        "vqa",
        lambda e: ((e.images[1],), {"question": e.questions}),
        F32,
    ),
    Case(
        "vqa_images_times_questions",
        "visual-question-answering",
        "vqa",
        lambda e: ((e.images[:3],), {"question": [e.questions[0], e.questions[3]]}),
        F32,
    ),
    Case(
        "vqa_padded_batches",
        "visual-question-answering",
        "vqa",
        lambda e: ((e.images,), {"question": [LONG_QUESTION, e.questions[2]], "batch_size": 3}),
        F32,
    ),
    Case(  # the same, one row at a time: what each row of a padded batch must give (REFERENCE section 0.2)
        "vqa_padded_rowwise",
        "visual-question-answering",
        "vqa",
        lambda e: ((e.images,), {"question": [LONG_QUESTION, e.questions[2]]}),
        F32,
    ),
    Case(
        "vqa_generator_of_dicts",
        "visual-question-answering",
        "vqa",
        lambda e: ((_gen([{"image": im, "question": q} for im, q in zip(e.images, e.questions, strict=True)]),), {}),
        F32,
    ),
    Case(
        "vqa_key_dataset_question",
        "visual-question-answering",
        "vqa",
        lambda e: ((), {"image": e.key_dataset(e.rows(3), "image"), "question": e.questions[3]}),
        F32,
    ),
    Case("vqa_top_k", "visual-question-answering", "vqa", lambda e: ((e.images[0], e.questions[0]), {"top_k": 3}), F32),
    Case(
        "vqa_options_at_construction",
        "visual-question-answering",
        "vqa",
        lambda e: ((e.images[0], e.questions[1]), {}),
        {**F32, "max_new_tokens": 1},
    ),
    Case(
        "vqa_beams_at_construction",
        "visual-question-answering",
        "vqa",
        lambda e: ((e.images[2], e.questions[2]), {}),
        {**F32, "num_beams": 3, "num_return_sequences": 2, "max_new_tokens": 3},
    ),
    Case("vqa_empty_list", "visual-question-answering", "vqa", lambda e: (([],), {"question": e.questions[0]}), F32),
    Case("vqa_default_dtype", "visual-question-answering", "vqa", lambda e: ((e.images[3], e.questions[3]), {})),
    # image-text-to-text (prompted captioning)
    Case("itt_single", "image-text-to-text", "caption", lambda e: ((e.images[0],), {"text": "a picture of"}), F32),
    Case(
        "itt_keywords",
        "image-text-to-text",
        "caption",
        lambda e: ((), {"images": e.images[1], "text": "A picture of"}),
        F32,
    ),
    Case("itt_positional_text", "image-text-to-text", "caption", lambda e: ((e.images[2], "there is"), {}), F32),
    Case(
        "itt_new_text_only",
        "image-text-to-text",
        "caption",
        lambda e: ((e.images[0],), {"text": "a picture of", "return_full_text": False}),
        F32,
    ),
    Case(
        "itt_lists",
        "image-text-to-text",
        "caption",
        lambda e: ((e.images[:2],), {"text": ["a picture of", "there are"]}),
        F32,
    ),
    Case("itt_there_are", "image-text-to-text", "caption", lambda e: ((e.images[1], "there are"), {}), F32),
    Case("itt_dict", "image-text-to-text", "caption", lambda e: (({"images": e.images[3], "text": "two"},), {}), F32),
    Case(
        "itt_generator_of_dicts",
        "image-text-to-text",
        "caption",
        lambda e: ((_gen([{"images": im, "text": "a picture of"} for im in e.images[:2]]),), {}),
        F32,
    ),
    Case(
        "itt_tensors",
        "image-text-to-text",
        "caption",
        lambda e: ((e.images[0],), {"text": "a", "return_tensors": True}),
        F32,
    ),
    Case(
        "itt_max_new_tokens",
        "image-text-to-text",
        "caption",
        lambda e: ((e.images[0],), {"text": "a", "max_new_tokens": 2}),
        F32,
    ),
    Case(
        "itt_generate_kwargs",
        "image-text-to-text",
        "caption",
        lambda e: ((e.images[1],), {"text": "three", "generate_kwargs": {"num_beams": 2}}),
        F32,
    ),
    Case("itt_empty_text", "image-text-to-text", "caption", lambda e: ((e.images[2],), {"text": ""}), F32),
    # zero-shot-image-classification with a BlipModel
    Case(
        "zs_single",
        "zero-shot-image-classification",
        "blip_model",
        lambda e: ((e.images[0],), {"candidate_labels": ["square", "circle", "triangle"]}),
    ),
    Case(
        "zs_positional_labels",
        "zero-shot-image-classification",
        "blip_model",
        lambda e: ((e.images[1], ["yellow", "purple", "orange", "red"]), {}),
    ),
    Case(
        "zs_image_keyword",
        "zero-shot-image-classification",
        "blip_model",
        lambda e: ((), {"image": e.images[2], "candidate_labels": ["one", "two", "three"]}),
    ),
    Case(
        "zs_list_batch2",
        "zero-shot-image-classification",
        "blip_model",
        lambda e: ((e.images[:3],), {"candidate_labels": ["white", "blue", "black"], "batch_size": 2}),
    ),
    Case(
        "zs_template",
        "zero-shot-image-classification",
        "blip_model",
        lambda e: ((e.images[3],), {"candidate_labels": ["a shape", "a dog"], "hypothesis_template": "{}"}),
    ),
    Case(
        "zs_one_label",
        "zero-shot-image-classification",
        "blip_model",
        lambda e: ((e.images[0],), {"candidate_labels": ["square"]}),
    ),
    Case(
        "zs_generator",
        "zero-shot-image-classification",
        "blip_model",
        lambda e: ((_gen(e.images[:2]),), {"candidate_labels": ["square", "circle"]}),
    ),
    Case(
        "zs_key_dataset",
        "zero-shot-image-classification",
        "blip_model",
        lambda e: ((e.key_dataset(e.rows(2), "image"),), {"candidate_labels": ["circle", "square"]}),
    ),
]
CASES_BY_NAME = {case.name: case for case in CASES}
# Calls transformers rejects, as cases whose golden record is the exception's type and message.
ERROR_CASES = [
    Case(
        "cap_max_new_tokens_twice",
        "image-to-text",
        "caption",
        lambda e: ((e.images[0],), {"max_new_tokens": 2, "generate_kwargs": {"max_new_tokens": 3}}),
        F32,
    ),
    Case("cap_no_inputs", "image-to-text", "caption", lambda e: ((None,), {}), F32),
    Case("itt_no_text", "image-text-to-text", "caption", lambda e: ((e.images[0],), {}), F32),
]


def plain(value: Any) -> Any:
    """A pipeline result as JSON-able data: iterators become {"iterator": [...]}, tensors {"ids": [...]}."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {key: plain(v) for key, v in value.items()}
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if hasattr(value, "shape"):
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        return {"ids": array.tolist()}
    if isinstance(value, collections.abc.Iterator):
        return {"iterator": [plain(v) for v in value]}
    raise TypeError(f"unexpected result part {type(value).__name__}")
