"""The twin registry: every public class, public method and significant layer, run through
`blip_torch` and `blip_tf` from one checkpoint on the same inputs.

An entry names the model class to load, how to call the PyTorch side and
the TensorFlow side, and which stored inputs feed it. The completeness test
(test_twins.py) fails when a public class or method has no entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.helpers.model_cases import FORWARD_CASES, GENERATION_CASES, PAPER_CASES


@dataclass(frozen=True)
class Twin:
    name: str
    class_name: str
    method: str  # public method covered ("forward" is `call` in TF)
    inputs: dict[str, str]
    kwargs: dict[str, Any] = field(default_factory=dict)
    variant: str = "plain"
    layer: Callable[[Any, str], Callable[..., Any]] | None = None  # picks a sub-layer of the loaded model


def _sub(path: str) -> Callable[[Any, str], Any]:
    """A sub-layer by attribute path, resolving Keras' reserved names like the weight loader does."""

    def pick(model: Any, framework: str) -> Any:
        from blip_core.weights.layouts import keras_attribute

        owner = model
        for segment in path.split("."):
            if segment.isdigit():
                owner = owner[int(segment)]
            else:
                owner = getattr(owner, keras_attribute(segment) if framework == "tf" else segment)
        return owner

    return pick


CLASS_TWINS = [Twin(c.name, c.class_name, c.method, c.inputs, c.kwargs) for c in FORWARD_CASES + PAPER_CASES]
# The "plain" decoders repeat one token; the other two variants exercise EOS, lengths and beams.
GENERATE_TWINS = [
    Twin(c.name, c.class_name, c.method, c.inputs, c.kwargs, c.variant)
    for c in GENERATION_CASES
    if c.variant != "plain"
]

HIDDEN = {"hidden_states": "vision_hidden"}
LAYER_TWINS = [
    Twin(
        "layer_vision_embeddings",
        "BlipVisionModel",
        "layer",
        {"pixel_values": "pixel_values"},
        layer=_sub("embeddings"),
    ),
    Twin(
        "layer_vision_block",
        "BlipVisionModel",
        "layer",
        HIDDEN,
        {"output_attentions": True},
        layer=_sub("encoder.layers.1"),
    ),
    Twin("layer_vision_attention", "BlipVisionModel", "layer", HIDDEN, layer=_sub("encoder.layers.0.self_attn")),
    Twin("layer_vision_mlp", "BlipVisionModel", "layer", HIDDEN, layer=_sub("encoder.layers.0.mlp")),
    Twin("layer_text_embeddings", "BlipTextModel", "layer", {"input_ids": "input_ids"}, layer=_sub("embeddings")),
    Twin("layer_text_pooler", "BlipTextModel", "layer", {"hidden_states": "text_hidden"}, layer=_sub("pooler")),
    Twin(
        "layer_text_self_attention",
        "BlipTextModel",
        "layer",
        {"hidden_states": "text_hidden"},
        layer=_sub("encoder.layer.0.attention"),
    ),
    Twin(
        "layer_text_cross_attention",
        "BlipTextModel",
        "layer",
        {"hidden_states": "text_hidden", "encoder_hidden_states": "encoder_hidden_states"},
        layer=_sub("encoder.layer.1.crossattention"),
    ),
    Twin(
        "layer_text_ffn",
        "BlipTextModel",
        "layer",
        {"hidden_states": "text_hidden"},
        layer=_sub("encoder.layer.1.intermediate"),
    ),
    Twin("layer_lm_head", "BlipTextLMHeadModel", "layer", {"sequence_output": "text_hidden"}, layer=_sub("cls")),
    Twin(
        "layer_lm_transform",
        "BlipTextLMHeadModel",
        "layer",
        {"hidden_states": "text_hidden"},
        layer=_sub("cls.predictions.transform"),
    ),
]

TWINS = CLASS_TWINS + GENERATE_TWINS + LAYER_TWINS


def layer_inputs(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Extra hidden-state inputs for the layer entries, seeded."""
    rng = np.random.RandomState(77)
    return {
        **inputs,
        "vision_hidden": rng.randn(2, 26, 24).astype(np.float32),
        "text_hidden": rng.randn(2, 7, 20).astype(np.float32),
    }
