"""Foreign parameter names -> canonical (`transformers` PyTorch) names, as tables.

Two foreign namings exist: TensorFlow's (`tf_model.h5`, TF-format
safetensors; REFERENCE §3.2) and the original Salesforce BLIP code's
(`.pth` checkpoints; REFERENCE §8).
"""

from __future__ import annotations

import re

from blip_core.weights.names import CONV2D, EMBEDDING, LINEAR, NORM, RAW

# TF leaf -> (torch leaf, kind); `kernel`'s kind depends on its rank (layouts.kind_of_keras_kernel).
TF_LEAF_RENAMES: dict[str, tuple[str, str | None]] = {
    "kernel": ("weight", None),
    "gamma": ("weight", NORM),
    "beta": ("bias", NORM),
    "embeddings": ("weight", EMBEDDING),
    "bias": ("bias", LINEAR),
}
TF_SCOPE_MARK = "tf_blip"  # model scopes: tf_blip_for_conditional_generation, tf_blip_model, ...
TF_MAIN_LAYER = "blip"  # TFBlipModel nests everything under its main layer `blip/`
_TF_SUFFIX = re.compile(r":\d+$")


def tf_to_canonical(tf_name: str) -> tuple[str, str | None]:
    """(canonical name, kind) of a TF weight name; kind None means "a kernel: decide by rank".

    `vision_model/tf_blip_for_conditional_generation/vision_model/encoder/layers_._0/self_attn/qkv/kernel:0`
    -> `vision_model.encoder.layers.0.self_attn.qkv.weight`.
    """
    segments = _TF_SUFFIX.sub("", tf_name).strip("/").split("/")
    scopes = [i for i, segment in enumerate(segments) if segment.startswith(TF_SCOPE_MARK)]
    if scopes:
        segments = segments[scopes[-1] + 1 :]
    if len(segments) > 1 and segments[0] == TF_MAIN_LAYER:
        segments = segments[1:]
    *path, leaf = segments
    torch_leaf, kind = TF_LEAF_RENAMES.get(leaf, (leaf, RAW))
    name = ".".join([*path, torch_leaf]).replace("_._", ".")
    return name, kind


# The other direction, for writing TF-port files: (kind, torch leaf) -> TF leaf.
TF_LEAF_FROM_TORCH: dict[tuple[str, str], str] = {
    (LINEAR, "weight"): "kernel",
    (CONV2D, "weight"): "kernel",
    (NORM, "weight"): "gamma",
    (NORM, "bias"): "beta",
    (EMBEDDING, "weight"): "embeddings",
}
# The model scope `transformers`' TF port writes each class's weights under.
TF_SCOPES: dict[str, str] = {
    "BlipVisionModel": "tf_blip_vision_model",
    "BlipTextModel": "tf_blip_text_model",
    "BlipTextLMHeadModel": "tf_blip_text_lm_head_model",
    "BlipModel": "tf_blip_model",
    "BlipForConditionalGeneration": "tf_blip_for_conditional_generation",
    "BlipForImageTextRetrieval": "tf_blip_for_image_text_retrieval",
    "BlipForQuestionAnswering": "tf_blip_for_question_answering",
}


def canonical_to_tf(name: str, kind: str, class_name: str) -> str:
    """The TF port's weight path of a canonical name, without scope and `:0`.

    `vision_model.encoder.layers.0.self_attn.qkv.weight` -> `vision_model/encoder/layers_._0/self_attn/qkv/kernel`.
    """
    *path, leaf = name.split(".")
    segments: list[str] = []
    for segment in path:
        if segment.isdigit():
            segments[-1] = f"{segments[-1]}_._{segment}"
        else:
            segments.append(segment)
    segments.append(TF_LEAF_FROM_TORCH.get((kind, leaf), leaf))
    if class_name == "BlipModel":
        segments.insert(0, TF_MAIN_LAYER)
    return "/".join(segments)


# Original salesforce/BLIP names: substring rules applied in order to vision keys.
ORIGINAL_VISION_RENAMES: tuple[tuple[str, str], ...] = (
    ("visual_encoder", "vision_model.encoder"),
    ("blocks", "layers"),
    ("attn", "self_attn"),
    ("norm1", "layer_norm1"),
    ("norm2", "layer_norm2"),
    ("encoder.norm", "post_layernorm"),
    ("encoder.patch_embed.proj", "embeddings.patch_embedding"),
    ("encoder.pos_embed", "embeddings.position_embedding"),
    ("encoder.cls_token", "embeddings.class_embedding"),
    ("self_attn.proj", "self_attn.projection"),
)
# Training-only state of the original checkpoints: momentum encoders, queues, temperature.
ORIGINAL_DROPPED_PREFIXES: tuple[str, ...] = (
    "visual_encoder_m.",
    "text_encoder_m.",
    "text_decoder_m.",
    "vision_proj_m.",
    "text_proj_m.",
)
ORIGINAL_DROPPED_NAMES: tuple[str, ...] = ("image_queue", "text_queue", "idx_queue", "ptr_queue", "temp")


def original_to_canonical(name: str) -> str | None:
    """Canonical name of an original BLIP key, or None for training-only state."""
    if name.startswith(ORIGINAL_DROPPED_PREFIXES) or name in ORIGINAL_DROPPED_NAMES:
        return None
    if not name.startswith("visual_encoder."):
        return name
    for old, new in ORIGINAL_VISION_RENAMES:
        name = name.replace(old, new)
    return name
