"""Foreign parameter names -> canonical (`transformers` PyTorch) names, as tables.

Two foreign namings exist: TensorFlow's (`tf_model.h5`, TF-format
safetensors; REFERENCE §3.2) and the original Salesforce BLIP code's
(`.pth` checkpoints; REFERENCE §8).
"""

from __future__ import annotations

import re

from blip_core.weights.names import EMBEDDING, LINEAR, NORM, RAW

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
