"""The original salesforce/BLIP `.pth` checkpoints (REFERENCE §8) as canonical tensors.

Read through `blip_core`'s restricted unpickler (no code runs), renamed by
`blip_core.weights.renames` (vision keys), stripped of training-only state
(momentum encoders, queues, `temp`) and of the other tasks' towers, with
`pos_embed` resized bicubically when the checkpoint's grid differs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from blip_core.checkpoints.torch_pickle import TorchPickleFile
from blip_core.config.configuration import BlipConfig
from blip_core.config.model_constants import ORIGINAL_LABEL_SMOOTHING
from blip_core.modeling.interpolation import resize_grid
from blip_core.weights.aliases import is_ignored
from blip_core.weights.renames import original_to_canonical

# task -> (class, original prefixes the task keeps)
TASKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "caption": ("BlipForConditionalGeneration", ("visual_encoder.", "text_decoder.")),
    "vqa": ("BlipForQuestionAnswering", ("visual_encoder.", "text_encoder.", "text_decoder.")),
    "itm": (
        "BlipForImageTextRetrieval",
        ("visual_encoder.", "text_encoder.", "vision_proj.", "text_proj.", "itm_head."),
    ),
}
VIT_SIZES: dict[str, dict[str, int]] = {
    "base": {},
    "large": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16},
}
POSITION_TABLE = "vision_model.embeddings.position_embedding"


@dataclass
class OriginalCheckpoint:
    """What `read_original` found: canonical tensors, the config, and what was left out and why."""

    class_name: str
    config: BlipConfig
    tensors: dict[str, np.ndarray]
    dropped: dict[str, list[str]] = field(default_factory=dict)
    resized_from: int | None = None


def original_config(task: str, vit: str, image_size: int, base: BlipConfig | None = None) -> BlipConfig:
    """The Hub configuration of a converted model: 12 text heads, ViT-B or ViT-L sizes, and the original
    decoder's label smoothing (0.1).

    `base` (a config of the checkpoint's own sizes) replaces the standard sizes for custom models.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
    if vit not in VIT_SIZES:
        raise ValueError(f"unknown ViT size {vit!r}; expected one of {sorted(VIT_SIZES)}")
    if base is not None:
        config = BlipConfig.from_dict(base.to_dict())
        config.vision_config.image_size = image_size
    else:
        config = BlipConfig(
            text_config={"num_attention_heads": 12},
            vision_config={**VIT_SIZES[vit], "image_size": image_size, "initializer_range": 0.02},
        )
    patch = config.vision_config.patch_size
    if image_size % patch:
        raise ValueError(f"--image-size must be a multiple of the {patch}-pixel patch, got {image_size}")
    config.architectures = [TASKS[task][0]]
    # The original decoder's loss smooths its labels by 0.1, hard-coded in its `med.py` whatever its config says
    # (the Hub configs say 0.0): a converted model trains, and scores captions, as the original did.
    config.text_config.label_smoothing = ORIGINAL_LABEL_SMOOTHING
    return config


def resize_position_table(table: np.ndarray, grid: int) -> np.ndarray:
    """(1, 1 + g*g, D) -> (1, 1 + grid*grid, D): the class position kept, the patch grid resized bicubically."""
    side = int(round((table.shape[1] - 1) ** 0.5))
    if side * side != table.shape[1] - 1:
        raise ValueError(f"pos_embed with {table.shape[1] - 1} patch positions is not a square grid")
    patches = table[0, 1:].reshape(side, side, -1)  # (S, S, D)
    resized = resize_grid(patches, grid, grid).reshape(1, grid * grid, -1)
    return np.concatenate([table[:, :1], resized], axis=1).astype(table.dtype)


def read_original(
    path: str | os.PathLike, task: str, vit: str = "base", image_size: int = 384, base: BlipConfig | None = None
) -> OriginalCheckpoint:
    """Read an original `.pth` for `task` into canonical names (not yet validated)."""
    config = original_config(task, vit, image_size, base)
    class_name, kept_prefixes = TASKS[task]
    source = TorchPickleFile(Path(path))
    result = OriginalCheckpoint(class_name, config, {}, {"training-only": [], "other tasks": [], "buffers": []})
    try:
        for name in source.keys():
            canonical = original_to_canonical(name)
            if canonical is None:
                result.dropped["training-only"].append(name)
            elif is_ignored(canonical):
                result.dropped["buffers"].append(name)
            elif not name.startswith(kept_prefixes):
                result.dropped["other tasks"].append(name)
            else:
                result.tensors[canonical] = source.get(name)
    finally:
        source.close()
    if not result.tensors:
        raise ValueError(f"{path} holds no {task} tensors (expected names starting with {', '.join(kept_prefixes)})")
    table = result.tensors.get(POSITION_TABLE)
    patch = config.vision_config.patch_size
    grid = image_size // patch
    if table is not None and table.shape[1] != grid * grid + 1:
        result.resized_from = int(round((table.shape[1] - 1) ** 0.5)) * patch
        result.tensors[POSITION_TABLE] = resize_position_table(table, grid)
    return result
