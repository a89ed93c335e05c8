"""Tiny checkpoint folders in the Hub's on-disk layout, written once per test session."""

from __future__ import annotations

from pathlib import Path

from blip_core.checkpoints.sources import save_safetensors
from blip_core.weights import saved_names
from tests.helpers.tiny import config_for, generation_model, seeded_weights, sub_config


def write_tiny_checkpoint(class_name: str, folder: Path, seed: int = 0) -> Path:
    """`config.json` + `model.safetensors` (tied aliases omitted, as transformers saves) for one class."""
    config = config_for(class_name)
    sub = sub_config(class_name, config)
    weights = seeded_weights(class_name, config, seed)
    names = saved_names(list(weights), class_name, sub)
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(folder / "model.safetensors", {name: weights[name] for name in names})
    sub.architectures = [class_name]
    sub.save_pretrained(folder)
    return folder


def write_generation_checkpoint(class_name: str, variant: str, folder: Path) -> Path:
    """A captioning/VQA checkpoint with the generation-test weights of `variant` (untied LM head)."""
    config, weights = generation_model(class_name, variant)
    names = saved_names(list(weights), class_name, config)
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(folder / "model.safetensors", {name: weights[name] for name in names})
    config.architectures = [class_name]
    config.save_pretrained(folder)
    return folder
