"""Which class an Auto entry point builds, from a checkpoint's `config.json` (shared by both trees)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from blip_core.config.json_files import read_config_json
from blip_core.io.hub import resolve_file
from blip_core.weights.names import MODEL_CLASSES

# Auto entry point -> the classes it accepts (the first is used when config.json names none).
AUTO_CLASSES: dict[str, tuple[str, ...]] = {
    "AutoModel": MODEL_CLASSES,
    "AutoModelForVisualQuestionAnswering": ("BlipForQuestionAnswering",),
    "AutoModelForImageTextToText": ("BlipForConditionalGeneration",),
    "AutoModelForVision2Seq": ("BlipForConditionalGeneration",),
    # transformers builds a BlipModel from any BLIP checkpoint here (a retrieval one loads with random
    # projections); only a BlipModel checkpoint is accepted, and the error points to the ITM pipeline.
    "AutoModelForZeroShotImageClassification": ("BlipModel",),
}
_BY_MODEL_TYPE = {"blip": "BlipModel", "blip_vision_model": "BlipVisionModel", "blip_text_model": "BlipTextModel"}


def resolve_class(auto_name: str, source: str | os.PathLike, hub: dict[str, Any], config: Any = None) -> str:
    """The BLIP class an Auto entry point loads `source` as, from `architectures` (else `model_type`) of
    `config` when given (a config object or a path), else of the checkpoint's `config.json`."""
    if hasattr(config, "to_dict"):
        raw = config.to_dict()
    else:
        config_source = source if config is None else config
        path = Path(config_source) if Path(config_source).is_file() else None
        raw = read_config_json(path or resolve_file(config_source, "config.json", **hub))
    allowed = AUTO_CLASSES[auto_name]
    declared = [name.removeprefix("TF") for name in raw.get("architectures") or []]
    for name in declared:
        if name in allowed:
            return name
    if declared:
        raise ValueError(
            f"{source}: config.json declares {declared[0]}, which {auto_name} does not load "
            f"(it loads {', '.join(allowed)})"
        )
    fallback = _BY_MODEL_TYPE.get(raw.get("model_type"))
    if fallback in allowed:
        return fallback
    return allowed[0]


# The pipeline task each class serves by default (`pipeline(task=None)` and error hints).
TASK_OF_CLASS = {
    "BlipForConditionalGeneration": "image-to-text",
    "BlipForQuestionAnswering": "visual-question-answering",
    "BlipForImageTextRetrieval": "image-text-matching",
    "BlipModel": "zero-shot-image-classification",
}
