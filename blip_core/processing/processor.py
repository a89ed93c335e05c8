"""`BlipProcessor`: the image processor and the tokenizer behind one call."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.config.model_constants import DEC_TOKEN_ID, ENC_TOKEN_ID
from blip_core.io.hub_upload import PushToHubMixin
from blip_core.processing.feature import BatchEncoding, BatchFeature, check_tensor_type, to_framework
from blip_core.processing.image_processing import BlipImageProcessor, ImageProcessorSettings
from blip_core.processing.tokenization import BlipTokenizer


class BlipProcessor(PushToHubMixin):
    """Prepare images and text for every BLIP model (`transformers.BlipProcessor`).

    Returns `pixel_values`, `input_ids` and `attention_mask`, as present, in a
    `BatchFeature` whose `.to(device, dtype)` casts only the pixels. The image
    processor is a `BlipImageProcessor` or a `BlipImageProcessorFast`. Empty
    lists give empty batches: `images=[]` pixel values (0, 3, H, W), `text=[]`
    ids and mask (0, 0) (`transformers` raises IndexError for both).

    >>> processor = BlipProcessor.from_pretrained("Salesforce/blip-image-captioning-base")  # doctest: +SKIP
    >>> batch = processor(images=image, text="a picture of", return_tensors="pt")  # doctest: +SKIP
    """

    attributes = ["image_processor", "tokenizer"]
    model_input_names = ["input_ids", "attention_mask", "pixel_values"]

    def __init__(self, image_processor: ImageProcessorSettings, tokenizer: BlipTokenizer) -> None:
        if not isinstance(image_processor, ImageProcessorSettings):
            raise TypeError(
                "image_processor must be a BlipImageProcessor or a BlipImageProcessorFast, "
                f"got {type(image_processor).__name__}"
            )
        if not isinstance(tokenizer, BlipTokenizer):
            raise TypeError(f"tokenizer must be a BlipTokenizer, got {type(tokenizer).__name__}")
        self.image_processor = image_processor
        self.tokenizer = tokenizer

    def __call__(
        self,
        images: Any = None,
        text: str | list[str] | None = None,
        return_tensors: Any = None,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        add_special_tokens: bool = True,
        **kwargs: Any,
    ) -> BatchFeature:
        """Encode images and/or text, routing each option as `transformers`' `BlipProcessor` does.

        Tokenizer options (`TEXT_OPTIONS`: `return_token_type_ids`, `stride`, `padding_side`, ...) go to the
        tokenizer, the rest to the image processor (`size`, `do_resize`, ...); grouped forms are accepted too:
        `text_kwargs={...}`, `images_kwargs={...}`, `common_kwargs={"return_tensors": ...}`.

        Raises:
            ValueError: neither images nor text; an option given twice (flat and grouped).
            TypeError: an option neither side takes (image processor options without images).
        """
        if images is None and text is None:
            raise ValueError("BlipProcessor needs images, text, or both")
        named = {"padding": padding, "truncation": truncation, "max_length": max_length}
        named.update(add_special_tokens=add_special_tokens, return_tensors=return_tensors)
        text_options, kwargs = _route_options(named, kwargs)
        padding, truncation, max_length = named["padding"], named["truncation"], named["max_length"]
        add_special_tokens, return_tensors = named["add_special_tokens"], named["return_tensors"]
        data: dict[str, Any] = {}
        if images is not None:
            data.update(self.image_processor(images, return_tensors=return_tensors, **kwargs))
        elif kwargs:
            raise TypeError(f"BlipProcessor got unexpected arguments {sorted(kwargs)}")
        if isinstance(text, (list, tuple)) and len(text) == 0:
            data.update(_empty_encoding(return_tensors, padding, max_length))
            if text_options.get("return_attention_mask") is False:
                del data["attention_mask"]
        elif text is not None:
            encoding = self.tokenizer(
                text,
                return_tensors=return_tensors,
                padding=padding,
                truncation=truncation,
                max_length=max_length,
                add_special_tokens=add_special_tokens,
                **text_options,
            )
            data.update(encoding)
        return BatchFeature(data)

    def tokenize_answers(
        self, answers: list[str], return_tensors: Any = None, max_length: int | None = None
    ) -> BatchEncoding:
        """A list of candidate answers tokenized once, for `rank_answers` (the original's answer list:
        [DEC] first, the answer, [SEP] last, padded to the longest; `max_length` cuts, keeping [SEP]).

        Returns `input_ids` and `attention_mask` (N, T). Raises TypeError for answers that are not a list of
        strings, ValueError for an empty list or an empty answer.
        """
        if isinstance(answers, str) or not isinstance(answers, (list, tuple)):
            raise TypeError(f"answers must be a list of strings, got {type(answers).__name__}")
        if not answers:
            raise ValueError("answers is empty: give at least one candidate answer")
        for answer in answers:
            if not isinstance(answer, str):
                raise TypeError(f"answers must be strings, got {type(answer).__name__}")
            if not answer.strip():
                raise ValueError("answers holds an empty answer")
        options = {"truncation": True, "max_length": max_length} if max_length is not None else {}
        encoded = self.tokenizer(list(answers), padding="longest", return_tensors="np", **options)
        ids = np.asarray(encoded["input_ids"]).copy()
        ids[:, 0] = DEC_TOKEN_ID
        return _encoding(ids, np.asarray(encoded["attention_mask"]), return_tensors)

    def encode_questions(
        self,
        questions: str | list[str],
        text_start_token: str = "[CLS]",
        return_tensors: Any = None,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Questions tokenized and padded, starting with `text_start_token`: "[CLS]" (`transformers`) or "[ENC]"
        (id 30523, the original BLIP's VQA questions); other tokenizer options (`truncation`, `max_length`) pass on.

        Raises ValueError for another start token.
        """
        if text_start_token not in ("[CLS]", "[ENC]"):
            raise ValueError(f"text_start_token must be '[CLS]' or '[ENC]', got {text_start_token!r}")
        encoded = self.tokenizer(questions, padding=kwargs.pop("padding", True), return_tensors="np", **kwargs)
        ids = np.asarray(encoded["input_ids"]).copy()
        if text_start_token == "[ENC]" and ids.size:
            ids[:, 0] = ENC_TOKEN_ID
        return _encoding(ids, np.asarray(encoded["attention_mask"]), return_tensors)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    def apply_chat_template(self, conversation: Any, chat_template: str | None = None, **kwargs: Any) -> Any:
        """BLIP has no chat template: a `ValueError`, as `transformers` raises for a processor without one."""
        raise ValueError(
            "Cannot use apply_chat_template because BlipProcessor has no chat template: BLIP takes an image "
            "and a plain text prompt or question (processor(images=..., text=...))"
        )

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, use_fast: bool | None = None, **kwargs: Any
    ) -> BlipProcessor:
        """Load `preprocessor_config.json` and the tokenizer files from a folder or Hub id.

        The image processor is `BlipImageProcessorFast` with `use_fast=True`, else `BlipImageProcessor`
        (also when the folder saved a fast one), as `transformers` 4.57 decides.
        """
        from blip_core.io.hub import split_hub_options
        from blip_core.processing.image_processing_fast import BlipImageProcessorFast

        options, kwargs = split_hub_options(kwargs)
        image_class = BlipImageProcessorFast if use_fast else BlipImageProcessor
        image_processor = image_class.from_pretrained(pretrained_model_name_or_path, **options, **kwargs)
        tokenizer = BlipTokenizer.from_pretrained(pretrained_model_name_or_path, **options)
        return cls(image_processor, tokenizer)

    def save_pretrained(
        self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs: Any
    ) -> list[Path]:
        """Write the Hub's processor file set into `save_directory` (`legacy_serialization` is accepted: the
        files are those `transformers` 4.57 writes either way); `push_to_hub=True` also uploads them
        (`blip_core.io.hub_upload`)."""
        from blip_core.io.hub_upload import check_save_kwargs

        check_save_kwargs("BlipProcessor", push_to_hub, kwargs, inert=("legacy_serialization",))
        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"save_pretrained: {directory} exists and is not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        return [self.image_processor.save_pretrained(directory), *self.tokenizer.save_pretrained(directory)]

    def __repr__(self) -> str:
        tokenizer = f"BlipTokenizer(len={len(self.tokenizer)})"
        return f"BlipProcessor(image_processor={self.image_processor!r}, tokenizer={tokenizer})"


# Tokenizer options a processor call passes on (transformers' `TextKwargs`, those BLIP's tokenizer takes).
TEXT_OPTIONS = (
    "text_pair",
    "stride",
    "is_split_into_words",
    "pad_to_multiple_of",
    "padding_side",
    "return_token_type_ids",
    "return_attention_mask",
    "return_overflowing_tokens",
    "return_special_tokens_mask",
    "return_offsets_mapping",
    "return_length",
    "verbose",
)
_NAMED_DEFAULTS = {"padding": False, "truncation": None, "max_length": None, "add_special_tokens": True}
_NAMED_DEFAULTS["return_tensors"] = None


def _grouped_options(kwargs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pop `text_kwargs`, `images_kwargs` and `common_kwargs` (dicts) out of `kwargs`.

    Raises TypeError for a group that is not a dict, ValueError for audio or video options."""
    groups: dict[str, dict[str, Any]] = {}
    for group in ("text", "images", "common"):
        given = kwargs.pop(f"{group}_kwargs", None)
        if given is not None and not isinstance(given, dict):
            raise TypeError(f"BlipProcessor: {group}_kwargs must be a dict, got {type(given).__name__}")
        groups[group] = dict(given or {})
    for group in ("audio_kwargs", "videos_kwargs"):
        if kwargs.pop(group, None):
            raise ValueError(f"BlipProcessor takes images and text only; {group} cannot be used")
    return groups


def _route_options(named: dict[str, Any], kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tokenizer options, image processor options) of one call; `named` (the call's own parameters) takes
    the values given in `text_kwargs`/`common_kwargs`, in place.

    Raises ValueError for an option given twice (flat and grouped, with different values)."""
    kwargs = dict(kwargs)
    grouped = _grouped_options(kwargs)
    for key, value in {**grouped["text"], **grouped["common"]}.items():
        if key in named:
            if named[key] != _NAMED_DEFAULTS[key] and named[key] != value:
                raise ValueError(f"BlipProcessor: {key} was given twice (as an argument and in a *_kwargs dict)")
            named[key] = value
    text_options = {"return_token_type_ids": False}  # transformers' BlipProcessor default
    text_options.update({key: kwargs.pop(key) for key in TEXT_OPTIONS if key in kwargs})
    text_options.update({key: value for key, value in grouped["text"].items() if key not in named})
    for key, value in grouped["images"].items():
        if key in kwargs and kwargs[key] != value:
            raise ValueError(f"BlipProcessor: {key} was given twice (as an argument and in images_kwargs)")
        kwargs[key] = value
    return text_options, kwargs


def _empty_encoding(return_tensors: Any, padding: bool | str, max_length: int | None) -> dict[str, Any]:
    """`input_ids` and `attention_mask` of 0 texts: (0, 0), or (0, max_length) when padding to it."""
    from blip_core.processing.text_options import PADDING, check_length_options, hashable

    if not hashable(padding) or padding not in PADDING:
        raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r:.40}")
    check_length_options(padding, max_length, None)
    tensor_type = check_tensor_type(return_tensors)
    if tensor_type is None:
        return {"input_ids": [], "attention_mask": []}
    length = max_length if padding == "max_length" and max_length else 0
    dtype = np.int32 if tensor_type == "tf" else np.int64
    return {name: to_framework(np.zeros((0, length), dtype), tensor_type) for name in ("input_ids", "attention_mask")}


def _encoding(ids: np.ndarray, mask: np.ndarray, return_tensors: Any) -> BatchEncoding:
    """`input_ids` and `attention_mask` as lists (None), NumPy, torch or TensorFlow (int32 there)."""
    tensor_type = check_tensor_type(return_tensors)
    if tensor_type is None:
        return BatchEncoding({"input_ids": ids.tolist(), "attention_mask": mask.tolist()})
    dtype = np.int32 if tensor_type == "tf" else np.int64
    return BatchEncoding(
        {
            name: to_framework(value.astype(dtype), tensor_type)
            for name, value in (("input_ids", ids), ("attention_mask", mask))
        }
    )
