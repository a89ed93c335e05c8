"""Tiny, odd-sized configs and one seeded, non-trivial weight dict per class.

Weights have real spread: non-zero biases, LayerNorm gains away from 1,
embeddings with variance, so that a parity check means something. The
values come from `np.random.RandomState` (a frozen stream), and tied
aliases hold their source's values, as a `.bin` file would.
"""

from __future__ import annotations

import hashlib
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


# The VQA decoder cross-attends to the question states, so its text width must equal the vision width.
VQA_TEXT = {"hidden_size": 24}


def config_for(class_name: str) -> BlipConfig:
    """The tiny config a class is tested with: text width 20 (not the vision 24) except for VQA."""
    if class_name.removeprefix("TF") == "BlipForQuestionAnswering":
        return tiny_config(text_config=VQA_TEXT)
    return tiny_config()


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


def seeded_weights(class_name: str, config: BlipConfig | Any | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Canonical name -> float32 array for every parameter of `class_name` (its tiny config by default)."""
    config = config_for(class_name) if config is None else config
    sub = sub_config(class_name, config) if isinstance(config, BlipConfig) else config
    rng = np.random.RandomState(seed)
    weights = {spec.name: _value(rng, spec.name, spec.kind, spec.shape) for spec in expected_params(class_name, sub)}
    for pair in tied_pairs(class_name, sub):
        weights[pair.alias] = weights[pair.source].copy()
    return weights


def weights_hash(weights: dict[str, np.ndarray]) -> str:
    """A digest of a weight dict, stored with golden files to prove they used these weights."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(weights[name]).tobytes())
    return digest.hexdigest()


# Random decoders collapse onto one repeated token. These variants untie the LM head, damp the
# cross-attention and stretch the positions so generated ids vary, and bias EOS so beams finish
# at different lengths: (position scale, cross-attention output scale, EOS bias, seed).
GENERATION_VARIANTS: dict[str, tuple[float, float, float, int] | None] = {
    "plain": None,
    "varied": (4.0, 0.2, 1.0, 1),
    "eos": (5.0, 0.3, 2.0, 3),
}


def generation_model(class_name: str, variant: str) -> tuple[BlipConfig, dict[str, np.ndarray]]:
    """(config, weights) of a captioning or VQA model for generation tests."""
    settings = GENERATION_VARIANTS[variant]
    if settings is None:
        return config_for(class_name), seeded_weights(class_name)
    position_scale, cross_scale, eos_bias, seed = settings
    config = config_for(class_name)
    config.text_config.tie_word_embeddings = False
    weights = seeded_weights(class_name, config, seed)
    rng = np.random.RandomState(100 + seed)
    head = "text_decoder.cls.predictions."
    weights[head + "decoder.weight"] = rng.randn(*weights[head + "decoder.weight"].shape).astype(np.float32)
    weights["text_decoder.bert.embeddings.position_embeddings.weight"] *= position_scale
    for name in weights:
        if name.startswith("text_decoder.") and "crossattention.output.dense" in name:
            weights[name] *= cross_scale
    weights[head + "bias"][config.text_config.sep_token_id] += eos_bias
    weights[head + "decoder.bias"] = weights[head + "bias"]
    return config, weights
