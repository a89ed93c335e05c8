"""Auto entry points: the class comes from the checkpoint's `config.json` (`architectures`)."""

from __future__ import annotations

import os
from typing import Any

from blip_core.io.hub import split_hub_options
from blip_core.modeling.model_classes import resolve_class


class _TFAutoBase:
    """Picks the BLIP class named by `config.json` and calls its `from_pretrained`."""

    def __init__(self) -> None:
        raise TypeError(f"{type(self).__name__} is not instantiated; use {type(self).__name__}.from_pretrained(...)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> Any:
        import blip_tf

        hub, _ = split_hub_options(kwargs)
        class_name = resolve_class(
            cls.__name__.removeprefix("TF"), pretrained_model_name_or_path, hub, kwargs.get("config")
        )
        return getattr(blip_tf, "TF" + class_name).from_pretrained(pretrained_model_name_or_path, **kwargs)


class TFAutoModel(_TFAutoBase):
    """Any BLIP checkpoint, as the class its `config.json` names (`transformers.TFAutoModel`)."""


class TFAutoModelForVisualQuestionAnswering(_TFAutoBase):
    """A VQA checkpoint as `TFBlipForQuestionAnswering`."""


class TFAutoModelForImageTextToText(_TFAutoBase):
    """A captioning checkpoint as `TFBlipForConditionalGeneration`."""


class TFAutoModelForVision2Seq(_TFAutoBase):
    """A captioning checkpoint as `TFBlipForConditionalGeneration` (`transformers`' older name for image-to-text)."""


class TFAutoModelForZeroShotImageClassification(_TFAutoBase):
    """A contrastive checkpoint as `TFBlipModel` (the zero-shot pipeline also scores retrieval checkpoints)."""
