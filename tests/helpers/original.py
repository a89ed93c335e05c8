"""Synthetic checkpoints in the original salesforce/BLIP naming, built from canonical tiny weights.

The names follow the original code (`models/vit.py`, `models/med.py`,
`models/blip*.py`), written here independently of the converter's table:
`visual_encoder.blocks.{i}.attn.qkv`, `visual_encoder.cls_token`, ...; the
retrieval checkpoints carry momentum encoders, queues and `temp`, the text
stacks their persistent `position_ids`.
"""

from __future__ import annotations

import re

import numpy as np

ORIGINAL_VISION = [
    (r"^vision_model\.embeddings\.class_embedding$", "visual_encoder.cls_token"),
    (r"^vision_model\.embeddings\.position_embedding$", "visual_encoder.pos_embed"),
    (r"^vision_model\.embeddings\.patch_embedding\.", "visual_encoder.patch_embed.proj."),
    (r"^vision_model\.post_layernorm\.", "visual_encoder.norm."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.self_attn\.projection\.", r"visual_encoder.blocks.\1.attn.proj."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.self_attn\.qkv\.", r"visual_encoder.blocks.\1.attn.qkv."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.layer_norm1\.", r"visual_encoder.blocks.\1.norm1."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.layer_norm2\.", r"visual_encoder.blocks.\1.norm2."),
    (r"^vision_model\.encoder\.layers\.(\d+)\.mlp\.", r"visual_encoder.blocks.\1.mlp."),
]


def original_name(canonical: str) -> str:
    for pattern, replacement in ORIGINAL_VISION:
        if re.match(pattern, canonical):
            return re.sub(pattern, replacement, canonical)
    return canonical  # text stacks and heads keep their names


def original_state(
    weights: dict[str, np.ndarray], momentum: bool = False, extra_text_tower: bool = False
) -> dict[str, np.ndarray]:
    """Canonical weights renamed to the original naming, with the original's extra state."""
    state = {original_name(name): value for name, value in weights.items()}
    for prefix in ("text_encoder.", "text_decoder.bert."):
        if any(name.startswith(prefix) for name in state):
            state[f"{prefix}embeddings.position_ids"] = np.arange(48, dtype=np.int64)[None]
    if momentum:
        for name in list(state):
            if name.startswith(("visual_encoder.", "text_encoder.")):
                head, _, tail = name.partition(".")
                state[f"{head}_m.{tail}"] = state[name] + 1.0
        state["vision_proj_m.weight"] = state["vision_proj.weight"] * 2
        state["image_queue"] = np.ones((10, 16), np.float32)
        state["text_queue"] = np.ones((10, 16), np.float32)
        state["idx_queue"] = np.zeros((1, 16), np.int64)
        state["ptr_queue"] = np.zeros((1,), np.int64)
        state["temp"] = np.array(0.07, np.float32)
    if extra_text_tower:  # a pretraining checkpoint also holds the other task's tower
        state["text_encoder.embeddings.word_embeddings.weight"] = np.zeros((99, 20), np.float32)
    return state


def save_original(path, state: dict[str, np.ndarray]) -> None:
    """`torch.save({"model": state_dict, ...})` as the original training scripts did."""
    import torch

    torch.save(
        {"model": {k: torch.from_numpy(np.array(v)) for k, v in state.items()}, "epoch": 9, "config": {"lr": 1e-5}},
        path,
    )
