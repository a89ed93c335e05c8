"""Tiny, odd-sized configs and one seeded, non-trivial weight dict per class.

Weights have real spread: non-zero biases, LayerNorm gains away from 1,
embeddings with variance, so that a parity check means something. The
values come from `np.random.RandomState` (a frozen stream), and tied
aliases hold their source's values, as a `.bin` file would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blip_core import BlipConfig
from blip_core.weights import expected_params, tied_pairs
from blip_core.weights.names import CONV2D, EMBEDDING, LINEAR, NORM

TINY_TEXT = {
    "vocab_size": 99,
    "hidden_size": 20,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 48,
    "bos_token_id": 97,
    "sep_token_id": 3,
    "pad_token_id": 0,
    "eos_token_id": 2,
}
TINY_VISION = {
    "hidden_size": 24,
    "intermediate_size": 29,
    "num_hidden_layers": 2,
    "num_attention_heads": 3,
    "image_size": 40,
    "patch_size": 8,
}
TINY_TOP = {"projection_dim": 12, "image_text_hidden_size": 10}


def tiny_config(**overrides: Any) -> BlipConfig:
    text = {**TINY_TEXT, **overrides.pop("text_config", {})}
    vision = {**TINY_VISION, **overrides.pop("vision_config", {})}
    return BlipConfig(text_config=text, vision_config=vision, **{**TINY_TOP, **overrides})


def sub_config(class_name: str, config: BlipConfig) -> Any:
    """The config a class is built from: the vision/text section for the sub-models."""
    name = class_name.removeprefix("TF")
    if name == "BlipVisionModel":
        return config.vision_config
    if name in ("BlipTextModel", "BlipTextLMHeadModel"):
        return config.text_config
    return config


def _value(rng: np.random.RandomState, name: str, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    leaf = name.rsplit(".", 1)[-1]
    if name.endswith("logit_scale"):
        return np.array(2.6592 + 0.1 * rng.randn(), dtype=np.float32)
    if kind == NORM:
        center = 1.0 if leaf == "weight" else 0.0
        return (center + 0.25 * rng.randn(*shape)).astype(np.float32)
    if kind in (LINEAR, CONV2D) and leaf == "weight":
        fan_in = int(np.prod(shape[1:]))
        return (rng.randn(*shape) * 1.3 / np.sqrt(fan_in)).astype(np.float32)
    if kind == EMBEDDING:
        return (0.6 * rng.randn(*shape)).astype(np.float32)
    return (0.3 * rng.randn(*shape)).astype(np.float32)  # biases, class/position embeddings


def seeded_weights(class_name: str, config: BlipConfig | Any, seed: int = 0) -> dict[str, np.ndarray]:
    """Canonical name -> float32 array for every parameter of `class_name`."""
    sub = sub_config(class_name, config) if isinstance(config, BlipConfig) else config
    rng = np.random.RandomState(seed)
    weights = {spec.name: _value(rng, spec.name, spec.kind, spec.shape) for spec in expected_params(class_name, sub)}
    for pair in tied_pairs(class_name, sub):
        weights[pair.alias] = weights[pair.source].copy()
    return weights
