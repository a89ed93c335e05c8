"""`BlipProcessor`: the image processor and the tokenizer behind one call."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from blip_core.feature import BatchFeature
from blip_core.image_processing import BlipImageProcessor
from blip_core.tokenization import BlipTokenizer

_HUB_OPTIONS = ("revision", "cache_dir", "local_files_only", "token")


class BlipProcessor:
    """Prepare images and text for every BLIP model (`transformers.BlipProcessor`).

    Returns `pixel_values`, `input_ids` and `attention_mask`, as present, in a
    `BatchFeature` whose `.to(device, dtype)` casts only the pixels.

    >>> processor = BlipProcessor.from_pretrained("Salesforce/blip-image-captioning-base")  # doctest: +SKIP
    >>> batch = processor(images=image, text="a picture of", return_tensors="pt")  # doctest: +SKIP
    """

    attributes = ["image_processor", "tokenizer"]
    model_input_names = ["input_ids", "attention_mask", "pixel_values"]

    def __init__(self, image_processor: BlipImageProcessor, tokenizer: BlipTokenizer) -> None:
        if not isinstance(image_processor, BlipImageProcessor):
            raise TypeError(f"image_processor must be a BlipImageProcessor, got {type(image_processor).__name__}")
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
        """Encode images and/or text; image settings (`size`, ...) and tokenizer settings pass through."""
        if images is None and text is None:
            raise ValueError("BlipProcessor needs images, text, or both")
        text_options = {
            k: kwargs.pop(k)
            for k in ("padding_side", "pad_to_multiple_of", "return_attention_mask", "text_pair")
            if k in kwargs
        }
        data: dict[str, Any] = {}
        if images is not None:
            data.update(self.image_processor(images, return_tensors=return_tensors, **kwargs))
        elif kwargs:
            raise TypeError(f"BlipProcessor got unexpected arguments {sorted(kwargs)}")
        if text is not None:
            encoding = self.tokenizer(
                text,
                return_tensors=return_tensors,
                padding=padding,
                truncation=truncation,
                max_length=max_length,
                add_special_tokens=add_special_tokens,
                return_token_type_ids=False,
                **text_options,
            )
            data.update(encoding)
        return BatchFeature(data)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> BlipProcessor:
        """Load `preprocessor_config.json` and the tokenizer files from a folder or Hub id."""
        options = {k: kwargs.pop(k) for k in _HUB_OPTIONS if k in kwargs}
        image_processor = BlipImageProcessor.from_pretrained(pretrained_model_name_or_path, **options, **kwargs)
        tokenizer = BlipTokenizer.from_pretrained(pretrained_model_name_or_path, **options)
        return cls(image_processor, tokenizer)

    def save_pretrained(self, save_directory: str | os.PathLike) -> list[Path]:
        """Write the Hub's processor file set into `save_directory`."""
        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"save_pretrained: {directory} exists and is not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        return [self.image_processor.save_pretrained(directory), *self.tokenizer.save_pretrained(directory)]

    def __repr__(self) -> str:
        tokenizer = f"BlipTokenizer(len={len(self.tokenizer)})"
        return f"BlipProcessor(image_processor={self.image_processor!r}, tokenizer={tokenizer})"
