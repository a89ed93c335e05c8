"""`AutoProcessor`, `AutoImageProcessor`, `AutoTokenizer` and `AutoConfig`: the BLIP cases of `transformers`'
auto classes (the model ones live in each tree's `auto.py`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from blip_core.config.configuration import (
    BlipConfig,
    BlipConfigBase,
    BlipTextConfig,
    BlipVisionConfig,
    read_config_json,
)
from blip_core.processing.image_processing import (
    BlipImageProcessor,
    ImageProcessorSettings,
    read_image_processor_config,
    resolve_image_processor_file,
)
from blip_core.processing.processor import BlipProcessor
from blip_core.processing.tokenization import BlipTokenizer

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
    from blip_core.processing.image_processing_fast import BlipImageProcessorFast

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


CONFIG_CLASSES: dict[str, type[BlipConfigBase]] = {
    cls.model_type: cls for cls in (BlipConfig, BlipVisionConfig, BlipTextConfig)
}


class AutoConfig:
    """Loads a BLIP `config.json` as the config class its `model_type` names (`blip`, `blip_vision_model`,
    `blip_text_model`).

    >>> config = AutoConfig.from_pretrained("Salesforce/blip-image-captioning-base")  # doctest: +SKIP
    """

    def __init__(self) -> None:
        raise TypeError("AutoConfig is not instantiated; use AutoConfig.from_pretrained(name_or_path)")

    @staticmethod
    def for_model(model_type: str, *args: Any, **kwargs: Any) -> BlipConfigBase:
        """A new config of `model_type` built from `kwargs`. Raises ValueError for a model type not BLIP's."""
        return _config_class(model_type, "for_model")(*args, **kwargs)

    @staticmethod
    def from_pretrained(pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> Any:
        """A folder, a `config.json` path or a Hub id (Hub options as `BlipConfig.from_pretrained`).

        Raises:
            ValueError: a `model_type` that is not BLIP's (named with the file).
            OSError: no `config.json` there (the `huggingface_hub` error type for a Hub miss).
        """
        from blip_core.config.configuration import CONFIG_NAME
        from blip_core.io.hub import resolve_file, split_hub_options

        hub, rest = split_hub_options(dict(kwargs))
        source = Path(pretrained_model_name_or_path)
        path = source if source.is_file() else resolve_file(pretrained_model_name_or_path, CONFIG_NAME, **hub)
        model_type = read_config_json(path).get("model_type")
        return _config_class(model_type, str(path)).from_pretrained(path, **rest)


def _config_class(model_type: Any, where: str) -> type[BlipConfigBase]:
    if not isinstance(model_type, str) or model_type not in CONFIG_CLASSES:
        raise ValueError(
            f"{where}: model_type {model_type!r} is not a BLIP model; blip-dual loads "
            f"{', '.join(map(repr, CONFIG_CLASSES))}"
        )
    return CONFIG_CLASSES[model_type]


class AutoTokenizer:
    """Loads the tokenizer of a BLIP folder or Hub id as `BlipTokenizer` (which gives the ids of the
    `BertTokenizerFast` `transformers` loads there, slow or fast: `use_fast` changes nothing).

    >>> tokenizer = AutoTokenizer.from_pretrained("Salesforce/blip-vqa-base")  # doctest: +SKIP
    """

    def __init__(self) -> None:
        raise TypeError("AutoTokenizer is not instantiated; use AutoTokenizer.from_pretrained(name_or_path)")

    @staticmethod
    def from_pretrained(
        pretrained_model_name_or_path: str | os.PathLike, *inputs: Any, use_fast: bool = True, **kwargs: Any
    ) -> BlipTokenizer:
        """See `BlipTokenizer.from_pretrained`. Raises `TypeError` for extra positional arguments."""
        if inputs:
            raise TypeError(f"AutoTokenizer.from_pretrained takes one positional argument, got {1 + len(inputs)}")
        kwargs.pop("tokenizer_type", None)
        return BlipTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
