"""The framework-neutral half of `from_pretrained` and `save_pretrained`, shared by both trees.

`open_pretrained` resolves the config and the weight files of a folder or Hub
id and matches them to a class (one `CheckpointError` listing every problem);
each tree then only creates its model and assigns the arrays.
`write_pretrained` writes `config.json` and a canonical `model.safetensors`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.checkpoint import TensorSource, open_weights, save_safetensors
from blip_core.configuration import BlipConfigBase
from blip_core.generation_config import GenerationConfig
from blip_core.hub import resolve_weights
from blip_core.weights import PreparedState, prepare_state

HUB_OPTIONS = ("revision", "cache_dir", "local_files_only", "token")


def split_hub_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Hub options, the rest) of `from_pretrained` keyword arguments."""
    hub = {key: value for key, value in kwargs.items() if key in HUB_OPTIONS}
    return hub, {key: value for key, value in kwargs.items() if key not in HUB_OPTIONS}


def resolve_config(
    config_class: type[BlipConfigBase], name_or_path: Any, config: Any, hub: dict, overrides: dict
) -> BlipConfigBase:
    """The config to build: read from `name_or_path` unless given; `overrides` set fields."""
    if config is None:
        return config_class.from_pretrained(name_or_path, **hub, **overrides)
    if not isinstance(config, config_class):
        raise TypeError(f"config must be a {config_class.__name__}, got {type(config).__name__}")
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def open_pretrained(
    name_or_path: Any, class_name: str, config: BlipConfigBase, hub: dict
) -> tuple[TensorSource, PreparedState]:
    """Open the weights of `name_or_path` and match them to `class_name`; the caller closes the source."""
    source = open_weights(resolve_weights(name_or_path, **hub))
    try:
        architectures = getattr(config, "architectures", None) or []
        bare = class_name[2:] if class_name.startswith("TFBlip") else class_name
        hint = ""
        if architectures and architectures[0] != bare:
            hint = f"config.json says the checkpoint is a {architectures[0]}"
        return source, prepare_state(source, class_name, config, hint=hint)
    except BaseException:
        source.close()
        raise


def write_pretrained(
    directory: str | os.PathLike,
    config: BlipConfigBase,
    class_name: str,
    arrays: Mapping[str, np.ndarray],
    dtype_name: str,
    bf16_names: frozenset[str] = frozenset(),
    generation_config: GenerationConfig | None = None,
) -> Path:
    """Write `model.safetensors` (canonical names, PyTorch layout), `config.json` and, for the classes
    that generate, `generation_config.json` (as `transformers` does), atomically each."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"save_pretrained: {directory} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    save_safetensors(directory / "model.safetensors", arrays, bf16_names=bf16_names)
    config.architectures = [class_name[2:] if class_name.startswith("TFBlip") else class_name]
    config.dtype = dtype_name
    config.save_pretrained(directory)
    if generation_config is not None:
        generation_config.save_pretrained(directory)
    return directory
