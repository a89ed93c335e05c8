"""blip_torch: the PyTorch BLIP models, a drop-in for `transformers`' PyTorch BLIP classes."""

import functools

from blip_core.config.generation_config import GenerationConfig
from blip_core.tasks.pipelines import pipeline as _pipeline
from blip_torch.auto import (
    AutoModel,
    AutoModelForImageTextToText,
    AutoModelForVision2Seq,
    AutoModelForVisualQuestionAnswering,
    AutoModelForZeroShotImageClassification,
)
from blip_torch.captioning import BlipForConditionalGeneration
from blip_torch.models import BlipModel
from blip_torch.question_answering import BlipForQuestionAnswering
from blip_torch.retrieval import BlipForImageTextRetrieval
from blip_torch.text import BlipTextLMHeadModel, BlipTextModel
from blip_torch.vision import BlipVisionModel

# `pipeline` in PyTorch: blip_core.pipeline with framework="pt".
pipeline = functools.partial(_pipeline, framework="pt")

__all__ = [
    "AutoModel",
    "AutoModelForImageTextToText",
    "AutoModelForVision2Seq",
    "AutoModelForVisualQuestionAnswering",
    "AutoModelForZeroShotImageClassification",
    "BlipForConditionalGeneration",
    "BlipForImageTextRetrieval",
    "BlipForQuestionAnswering",
    "BlipModel",
    "BlipTextLMHeadModel",
    "BlipTextModel",
    "BlipVisionModel",
    "GenerationConfig",
    "pipeline",
]
