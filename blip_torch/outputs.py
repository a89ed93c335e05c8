"""Output classes of the PyTorch tree: `blip_core`'s framework-neutral ones, under their `transformers` names."""

from blip_core.modeling.outputs import (
    BaseModelOutputWithPooling,
    BaseModelOutputWithPoolingAndCrossAttentions,
    BlipAnswerRankingOutput,
    BlipForConditionalGenerationModelOutput,
    BlipImageTextMatchingModelOutput,
    BlipOutput,
    BlipTextVisionModelOutput,
    CausalLMOutputWithCrossAttentions,
    GenerateBeamDecoderOnlyOutput,
    GenerateDecoderOnlyOutput,
    GenerateOutput,
    ModelOutput,
)

__all__ = [
    "BaseModelOutputWithPooling",
    "BaseModelOutputWithPoolingAndCrossAttentions",
    "BlipAnswerRankingOutput",
    "BlipForConditionalGenerationModelOutput",
    "BlipImageTextMatchingModelOutput",
    "BlipOutput",
    "BlipTextVisionModelOutput",
    "CausalLMOutputWithCrossAttentions",
    "GenerateBeamDecoderOnlyOutput",
    "GenerateDecoderOnlyOutput",
    "GenerateOutput",
    "ModelOutput",
]
