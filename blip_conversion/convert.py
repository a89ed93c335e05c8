"""Conversions between checkpoint formats: read -> rename (blip_core tables) -> validate -> write atomically.

Every conversion validates the tensors against the model class (one error
listing every problem), writes into a temporary folder and moves it into
place only when complete; an existing destination is replaced only with
`force`. Processor files travel with the weights.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blip_conversion.formats.original import read_original
from blip_conversion.output import check_destination, output_folder, progress
from blip_core.checkpoints.keras_weights import KerasWeightsFile
from blip_core.checkpoints.sources import ArraySource, open_weights, save_safetensors
from blip_core.config.configuration import (
    BlipConfig,
    BlipConfigBase,
    BlipTextConfig,
    BlipVisionConfig,
    read_config_json,
)
from blip_core.io.hub import ALL_FORMATS, resolve_file, resolve_weights
from blip_core.processing.image_processing import BlipImageProcessor
from blip_core.processing.processor import BlipProcessor
from blip_core.processing.tokenization import BUNDLED_VOCAB_FILE, BlipTokenizer
from blip_core.weights import MODEL_CLASSES, prepare_state

PROCESSOR_FILES = (
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
)
# Copied when the source has them: the generation settings both trees load with the model.
MODEL_SIDE_FILES = ("generation_config.json",)
_CONFIG_CLASSES = {"blip": BlipConfig, "blip_vision_model": BlipVisionConfig, "blip_text_model": BlipTextConfig}


@dataclass
class Checkpoint:
    """Canonical tensors of one model class, validated, with the config they belong to."""

    class_name: str
    config: BlipConfigBase
    tensors: dict[str, np.ndarray]
    origin: str


def load_config(source: str | os.PathLike, hub: Mapping[str, Any]) -> tuple[BlipConfigBase, str | None]:
    """The config of a folder or Hub id, and the class its `architectures` names."""
    path = resolve_file(source, "config.json", **hub)
    raw = read_config_json(path)
    config_class = _CONFIG_CLASSES.get(raw.get("model_type"))
    if config_class is None:
        raise ValueError(f"{path}: model_type {raw.get('model_type')!r} is not a BLIP model")
    architectures = raw.get("architectures") or []
    return config_class.from_dict(raw), (architectures[0] if architectures else None)


def read_checkpoint(
    source: str | os.PathLike,
    class_name: str | None = None,
    formats: tuple[str, ...] = ALL_FORMATS,
    hub: Mapping[str, Any] | None = None,
) -> Checkpoint:
    """Read and validate the weights of a folder or Hub id, in the first of `formats` it holds."""
    hub = dict(hub or {})
    config, declared = load_config(source, hub)
    class_name = class_name or declared
    if class_name not in MODEL_CLASSES:
        raise ValueError(
            f"cannot tell the model class of {source} (config.json architectures: {declared!r}); pass --class"
        )
    files = resolve_weights(source, formats=formats, **hub)
    weights = open_weights(files)
    try:
        state = prepare_state(weights, class_name, config)
        sizes = {name: int(np.prod(state.specs[name].shape)) * 4 for name in state.names}
        tensors = {
            name: state.get(name)
            for name in progress(state.names, sum(sizes.values()), sizes, f"reading {files.paths[0].name}")
        }
    finally:
        weights.close()
    return Checkpoint(class_name, config, tensors, str(files.paths[0]))


def _copy_processor_files(
    source: str | os.PathLike | None, folder: Path, hub: Mapping[str, Any], image_size: int | None
) -> None:
    """Copy the processor files (and generation settings) of `source`; without processor files, write BLIP's
    (bundled vocabulary, a processor at the model's `image_size`)."""
    copied = 0
    if source is not None:
        for name in PROCESSOR_FILES + MODEL_SIDE_FILES:
            path = resolve_file(source, name, required=False, **hub)
            if path is not None:
                shutil.copyfile(path, folder / name)
                copied += name in PROCESSOR_FILES
    if not copied:
        image_processor = BlipImageProcessor(size=image_size or 384)
        BlipProcessor(image_processor, BlipTokenizer(vocab_file=BUNDLED_VOCAB_FILE)).save_pretrained(folder)


def _write(
    checkpoint: Checkpoint,
    destination: str | os.PathLike,
    force: bool,
    writer: Callable[[Path], None],
    processor_source: str | os.PathLike | None,
    hub: Mapping[str, Any],
) -> Path:
    with output_folder(destination, force) as folder:
        writer(folder)
        checkpoint.config.architectures = [checkpoint.class_name]
        checkpoint.config.save_pretrained(folder)
        _copy_processor_files(processor_source, folder, hub, _image_size(checkpoint.config))
    return Path(destination)


def _image_size(config: Any) -> int | None:
    """The input size a model was built for (None for a text-only model)."""
    return getattr(getattr(config, "vision_config", config), "image_size", None)


def to_safetensors(
    source: str,
    destination: str,
    force: bool = False,
    class_name: str | None = None,
    hub: Mapping[str, Any] | None = None,
) -> Path:
    """Any checkpoint (every format `blip_core.checkpoints.sources` reads, sharded too) -> canonical
    `model.safetensors`."""
    check_destination(destination, force, source)
    hub = dict(hub or {})
    checkpoint = read_checkpoint(source, class_name, hub=hub)
    return _write(
        checkpoint,
        destination,
        force,
        lambda folder: save_safetensors(folder / "model.safetensors", checkpoint.tensors),
        source,
        hub,
    )


def to_bin(
    source: str,
    destination: str,
    force: bool = False,
    class_name: str | None = None,
    hub: Mapping[str, Any] | None = None,
) -> Path:
    """Any checkpoint -> `pytorch_model.bin` (needs torch)."""
    from blip_core.checkpoints.bin_writer import write_bin

    check_destination(destination, force, source)
    hub = dict(hub or {})
    checkpoint = read_checkpoint(source, class_name, hub=hub)
    return _write(
        checkpoint,
        destination,
        force,
        lambda folder: write_bin(folder / "pytorch_model.bin", checkpoint.tensors),
        source,
        hub,
    )


def to_h5(
    source: str,
    destination: str,
    force: bool = False,
    class_name: str | None = None,
    hub: Mapping[str, Any] | None = None,
) -> Path:
    """Any checkpoint -> `tf_model.h5` as `transformers`' TF port names it (needs h5py, not TF)."""
    from blip_core.checkpoints.h5_writer import write_tf_h5

    check_destination(destination, force, source)
    hub = dict(hub or {})
    checkpoint = read_checkpoint(source, class_name, hub=hub)
    return _write(
        checkpoint,
        destination,
        force,
        lambda folder: write_tf_h5(
            folder / "tf_model.h5", checkpoint.tensors, checkpoint.class_name, checkpoint.config
        ),
        source,
        hub,
    )


def from_original(
    checkpoint_path: str,
    task: str,
    destination: str,
    vit: str = "base",
    image_size: int = 384,
    force: bool = False,
    config_path: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """An original salesforce/BLIP `.pth` -> the Hub layout; returns the folder and a report.

    `config_path` (a BLIP `config.json`) gives the sizes of a custom-size checkpoint.
    """
    check_destination(destination, force, checkpoint_path, config_path)
    base = BlipConfig.from_json_file(config_path) if config_path else None
    original = read_original(checkpoint_path, task, vit, image_size, base)
    prepare_state(ArraySource(checkpoint_path, original.tensors), original.class_name, original.config)
    checkpoint = Checkpoint(original.class_name, original.config, original.tensors, str(checkpoint_path))
    folder = _write(
        checkpoint,
        destination,
        force,
        lambda out: save_safetensors(out / "model.safetensors", original.tensors),
        None,
        {},
    )
    report = {
        "class": original.class_name,
        "tensors": len(original.tensors),
        "resized_from": original.resized_from,
        **{f"dropped {why}": len(names) for why, names in original.dropped.items()},
    }
    return folder, report


def to_keras(
    source: str, destination: str, force: bool = False, saved_model: bool = False, hub: Mapping[str, Any] | None = None
) -> Path:
    """Any checkpoint -> a Keras 3 `model.weights.h5` (and, with `saved_model`, a serving SavedModel)."""
    check_destination(destination, force, source)
    import blip_tf

    hub = dict(hub or {})
    config, class_name = load_config(source, hub)
    if class_name not in MODEL_CLASSES:
        raise ValueError(f"cannot tell the model class of {source} (config.json architectures: {class_name!r})")
    model = getattr(blip_tf, "TF" + class_name).from_pretrained(source, **hub)
    if saved_model and class_name not in ("BlipForConditionalGeneration", "BlipForQuestionAnswering"):
        raise ValueError(f"--saved-model exports the captioning and VQA models; {class_name} has no generate()")
    with output_folder(destination, force) as folder:
        model.save_weights(str(folder / "model.weights.h5"))
        KerasWeightsFile(folder / "model.weights.h5").close()  # readable by every loader (Keras >= 3.6 names layers)
        model.config.save_pretrained(folder)
        _copy_processor_files(source, folder, hub, _image_size(model.config))
        if saved_model:
            blip_tf.export_for_serving(model, str(folder / "saved_model"))
    return Path(destination)
