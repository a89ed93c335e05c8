"""blip_torch: the PyTorch BLIP models, a drop-in for `transformers`' PyTorch BLIP classes."""

from blip_torch.models import (
    BlipForConditionalGeneration,
    BlipForImageTextRetrieval,
    BlipForQuestionAnswering,
    BlipModel,
)
from blip_torch.text import BlipTextLMHeadModel, BlipTextModel
from blip_torch.vision import BlipVisionModel

__all__ = [
    "BlipForConditionalGeneration",
    "BlipForImageTextRetrieval",
    "BlipForQuestionAnswering",
    "BlipModel",
    "BlipTextLMHeadModel",
    "BlipTextModel",
    "BlipVisionModel",
]
