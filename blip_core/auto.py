"""`AutoProcessor` and `AutoImageProcessor`: the BLIP cases of `transformers`' auto classes."""

from __future__ import annotations

import os
from typing import Any

from blip_core.image_processing import (
    BlipImageProcessor,
    ImageProcessorSettings,
    read_image_processor_config,
    resolve_image_processor_file,
)
from blip_core.processing import BlipProcessor

_BLIP_TYPES = (None, "BlipImageProcessor", "BlipImageProcessorFast")


class AutoProcessor:
    """Loads the processor of a BLIP folder or Hub id (`use_fast=True` for the fast image processor).

    >>> processor = AutoProcessor.from_pretrained("Salesforce/blip-vqa-base")  # doctest: +SKIP
    """

    def __init__(self) -> None:
        raise TypeError("AutoProcessor is not instantiated; use AutoProcessor.from_pretrained(name_or_path)")

    @staticmethod
    def from_pretrained(pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> BlipProcessor:
        return BlipProcessor.from_pretrained(pretrained_model_name_or_path, **kwargs)


def image_processor_class(saved_type: Any, use_fast: bool | None) -> type[ImageProcessorSettings]:
    """The class `transformers` 4.57.6 picks: `use_fast` when given, else the saved type's speed.

    Raises ValueError for a `image_processor_type` that is not BLIP's.
    """
    from blip_core.image_processing_fast import BlipImageProcessorFast

    if saved_type not in _BLIP_TYPES:
        raise ValueError(
            f"preprocessor_config.json names image_processor_type {saved_type!r}; blip-dual provides only "
            "BlipImageProcessor and BlipImageProcessorFast"
        )
    fast = str(saved_type).endswith("Fast") if use_fast is None else bool(use_fast)
    return BlipImageProcessorFast if fast else BlipImageProcessor


class AutoImageProcessor:
    """Loads the image processor of a BLIP folder or Hub id, slow or fast.

    `use_fast=None` gives the class the folder was saved with; `True`/`False` choose.

    >>> processor = AutoImageProcessor.from_pretrained("Salesforce/blip-vqa-base", use_fast=True)  # doctest: +SKIP
    """

    def __init__(self) -> None:
        raise TypeError("AutoImageProcessor is not instantiated; use AutoImageProcessor.from_pretrained(name_or_path)")

    @staticmethod
    def from_pretrained(
        pretrained_model_name_or_path: str | os.PathLike, use_fast: bool | None = None, **kwargs: Any
    ) -> ImageProcessorSettings:
        """Read `preprocessor_config.json`; keyword settings (`size=...`) override the file's."""
        path = resolve_image_processor_file(pretrained_model_name_or_path, kwargs)
        config = read_image_processor_config(path)
        cls = image_processor_class(config.get("image_processor_type"), use_fast)
        try:
            return cls.from_dict(config, **kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None
