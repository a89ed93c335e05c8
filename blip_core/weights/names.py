"""The expected parameters of every BLIP class for a config (REFERENCE §2).

Names are `transformers`' PyTorch `state_dict` keys, in registration order;
shapes are in PyTorch layout; `kind` tells `layouts.py` how Keras stores it.
Both model trees are tested against these lists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Kinds: the module a parameter belongs to decides its Keras layout and name.
LINEAR, CONV2D, EMBEDDING, NORM, RAW = "linear", "conv2d", "embedding", "norm", "raw"

MODEL_CLASSES = (
    "BlipVisionModel",
    "BlipTextModel",
    "BlipTextLMHeadModel",
    "BlipModel",
    "BlipForConditionalGeneration",
    "BlipForImageTextRetrieval",
    "BlipForQuestionAnswering",
)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: canonical name, module kind and PyTorch-layout shape."""

    name: str
    kind: str
    shape: tuple[int, ...]

    @property
    def leaf(self) -> str:
        return self.name.rsplit(".", 1)[-1]


def _linear(prefix: str, out_features: int, in_features: int, bias: bool = True) -> list[ParamSpec]:
    specs = [ParamSpec(f"{prefix}.weight", LINEAR, (out_features, in_features))]
    if bias:
        specs.append(ParamSpec(f"{prefix}.bias", LINEAR, (out_features,)))
    return specs


def _norm(prefix: str, width: int) -> list[ParamSpec]:
    return [ParamSpec(f"{prefix}.weight", NORM, (width,)), ParamSpec(f"{prefix}.bias", NORM, (width,))]


def vision_params(vision: Any, prefix: str = "") -> list[ParamSpec]:
    width, patch = vision.hidden_size, vision.patch_size
    positions = (vision.image_size // patch) ** 2 + 1
    specs = [
        ParamSpec(f"{prefix}embeddings.class_embedding", RAW, (1, 1, width)),
        ParamSpec(f"{prefix}embeddings.position_embedding", RAW, (1, positions, width)),
        ParamSpec(f"{prefix}embeddings.patch_embedding.weight", CONV2D, (width, 3, patch, patch)),
        ParamSpec(f"{prefix}embeddings.patch_embedding.bias", CONV2D, (width,)),
    ]
    for i in range(vision.num_hidden_layers):
        layer = f"{prefix}encoder.layers.{i}."
        specs += _linear(f"{layer}self_attn.qkv", 3 * width, width)
        specs += _linear(f"{layer}self_attn.projection", width, width)
        specs += _norm(f"{layer}layer_norm1", width)
        specs += _linear(f"{layer}mlp.fc1", vision.intermediate_size, width)
        specs += _linear(f"{layer}mlp.fc2", width, vision.intermediate_size)
        specs += _norm(f"{layer}layer_norm2", width)
    specs += _norm(f"{prefix}post_layernorm", width)
    return specs


def _attention(prefix: str, width: int, key_width: int) -> list[ParamSpec]:
    specs = _linear(f"{prefix}.self.query", width, width)
    specs += _linear(f"{prefix}.self.key", width, key_width)
    specs += _linear(f"{prefix}.self.value", width, key_width)
    specs += _linear(f"{prefix}.output.dense", width, width)
    specs += _norm(f"{prefix}.output.LayerNorm", width)
    return specs


def text_params(text: Any, prefix: str = "", add_pooling_layer: bool = True) -> list[ParamSpec]:
    width = text.hidden_size
    specs = [
        ParamSpec(f"{prefix}embeddings.word_embeddings.weight", EMBEDDING, (text.vocab_size, width)),
        ParamSpec(f"{prefix}embeddings.position_embeddings.weight", EMBEDDING, (text.max_position_embeddings, width)),
        *_norm(f"{prefix}embeddings.LayerNorm", width),
    ]
    for i in range(text.num_hidden_layers):
        layer = f"{prefix}encoder.layer.{i}."
        specs += _attention(f"{layer}attention", width, width)
        if text.is_decoder:
            specs += _attention(f"{layer}crossattention", width, text.encoder_hidden_size)
        specs += _linear(f"{layer}intermediate.dense", text.intermediate_size, width)
        specs += _linear(f"{layer}output.dense", width, text.intermediate_size)
        specs += _norm(f"{layer}output.LayerNorm", width)
    if add_pooling_layer:
        specs += _linear(f"{prefix}pooler.dense", width, width)
    return specs


def lm_head_params(text: Any, prefix: str = "") -> list[ParamSpec]:
    width, vocab = text.hidden_size, text.vocab_size
    return [
        ParamSpec(f"{prefix}cls.predictions.bias", RAW, (vocab,)),
        *_linear(f"{prefix}cls.predictions.transform.dense", width, width),
        *_norm(f"{prefix}cls.predictions.transform.LayerNorm", width),
        *_linear(f"{prefix}cls.predictions.decoder", vocab, width),
    ]


def lm_model_params(text: Any, prefix: str = "") -> list[ParamSpec]:
    return text_params(text, f"{prefix}bert.", add_pooling_layer=False) + lm_head_params(text, prefix)


def _blip_model(config: Any) -> list[ParamSpec]:
    text, vision = config.text_config, config.vision_config
    return [
        ParamSpec("logit_scale", RAW, ()),
        *text_params(text, "text_model.", add_pooling_layer=True),
        *vision_params(vision, "vision_model."),
        *_linear("visual_projection", config.projection_dim, vision.hidden_size, bias=False),
        *_linear("text_projection", config.projection_dim, text.hidden_size, bias=False),
    ]


def _captioning(config: Any) -> list[ParamSpec]:
    return vision_params(config.vision_config, "vision_model.") + lm_model_params(config.text_config, "text_decoder.")


def _retrieval(config: Any) -> list[ParamSpec]:
    text, vision, width = config.text_config, config.vision_config, config.image_text_hidden_size
    return [
        *vision_params(vision, "vision_model."),
        *text_params(text, "text_encoder.", add_pooling_layer=False),
        *_linear("vision_proj", width, vision.hidden_size),
        *_linear("text_proj", width, text.hidden_size),
        *_linear("itm_head", 2, text.hidden_size),
    ]


def _question_answering(config: Any) -> list[ParamSpec]:
    text = config.text_config
    return [
        *vision_params(config.vision_config, "vision_model."),
        *text_params(text, "text_encoder.", add_pooling_layer=False),
        *lm_model_params(text, "text_decoder."),
    ]


_BUILDERS: dict[str, Callable[..., list[ParamSpec]]] = {
    "BlipVisionModel": lambda config: vision_params(config),
    "BlipTextModel": lambda config, add_pooling_layer=True: text_params(config, "", add_pooling_layer),
    "BlipTextLMHeadModel": lambda config: lm_model_params(config),
    "BlipModel": _blip_model,
    "BlipForConditionalGeneration": _captioning,
    "BlipForImageTextRetrieval": _retrieval,
    "BlipForQuestionAnswering": _question_answering,
}

# Where each class's own parts sit inside bigger checkpoints (first match wins).
EMBEDDED_PREFIXES: dict[str, tuple[str, ...]] = {
    "BlipVisionModel": ("vision_model.",),
    "BlipTextModel": ("text_model.", "text_encoder.", "text_decoder.bert."),
    "BlipTextLMHeadModel": ("text_decoder.",),
}


def expected_params(class_name: str, config: Any, **options: Any) -> list[ParamSpec]:
    """Every parameter of `class_name` built from `config`, in `state_dict` order."""
    try:
        builder = _BUILDERS[_base_name(class_name)]
    except KeyError:
        raise ValueError(f"unknown BLIP class {class_name!r}; known: {', '.join(MODEL_CLASSES)}") from None
    return builder(config, **options)


def _base_name(class_name: str) -> str:
    return class_name[2:] if class_name.startswith("TFBlip") else class_name
