"""The framework-neutral half of `from_pretrained` and `save_pretrained`, shared by both trees.

`open_pretrained` resolves the config and the weight files of a folder or Hub
id and matches them to a class (one `CheckpointError` listing every problem);
each tree then only creates its model and assigns the arrays. The keyword
arguments are sorted by `blip_core.modeling.load_options` and `blip_core.checkpoints.writing`.
`write_pretrained` writes the weights (`model.safetensors` by default, sharded
and in other formats on request), `config.json` and `generation_config.json`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.checkpoints.sources import TensorSource, map_tensor, open_weights
from blip_core.checkpoints.writing import SaveOptions, staged_save, write_weights
from blip_core.config.configuration import BlipConfigBase
from blip_core.config.generation_config import GenerationConfig
from blip_core.io.hub import resolve_weights
from blip_core.modeling.load_options import LoadOptions
from blip_core.modeling.model_classes import TASK_OF_CLASS
from blip_core.weights import PreparedState, expected_params, prepare_state


def open_pretrained(
    name_or_path: Any, class_name: str, config: BlipConfigBase, options: LoadOptions
) -> tuple[TensorSource, PreparedState]:
    """Open the weights of `name_or_path` (the formats and variant `options` allow) and match them to
    `class_name`; the caller closes the source.

    Raises:
        OSError: no weight file (`blip_core.io.hub_errors`). CheckpointError (a ValueError): the tensors do not
            fit the model; with `ignore_mismatched_sizes=True` too (nothing is re-initialised here).
    """
    files = resolve_weights(name_or_path, **options.hub, formats=options.formats, variant=options.variant)
    source = open_weights(files)
    try:
        architectures = getattr(config, "architectures", None) or []
        bare = class_name[2:] if class_name.startswith("TFBlip") else class_name
        hints = []
        if architectures and architectures[0] != bare:
            hints.append(
                f"config.json says the checkpoint is a {architectures[0]}; load it with that class"
                + (f" (pipeline task {TASK_OF_CLASS[architectures[0]]!r})" if architectures[0] in TASK_OF_CLASS else "")
            )
        if options.ignore_mismatched_sizes:
            hints.append(
                "ignore_mismatched_sizes=True does not apply: blip-dual never re-initialises tensors of a checkpoint "
                "that does not fit; load with the checkpoint's own config, then change the model "
                "(e.g. resize_token_embeddings)"
            )
        return source, prepare_state(source, class_name, config, hint="; ".join(hints))
    except BaseException:
        source.close()
        raise


def mapped_tensor(state: PreparedState, name: str) -> tuple[str, np.ndarray] | None:
    """(file dtype name such as "F32" or "BF16", a copy-on-write view of the file's bytes) for parameter `name`,
    for a framework that adopts it as the parameter's memory; None where the tensor cannot be mapped as stored
    (not safetensors, TensorFlow naming, misaligned, big-endian host; `SafetensorsFile.map_tensor`): read it."""
    return map_tensor(state.source, state.prefix + name)


def write_pretrained(
    directory: str | os.PathLike,
    config: BlipConfigBase,
    class_name: str,
    arrays: Mapping[str, np.ndarray],
    dtype_name: str,
    options: SaveOptions,
    *,
    fmt: str = "safetensors",
    bf16_names: frozenset[str] = frozenset(),
    generation_config: GenerationConfig | None = None,
    total_parameters: int | None = None,
) -> Path:
    """Write the weights (`fmt`, sharded and named as `options` say; `saving.write_weights`), then
    `config.json` and, for the classes that generate, `generation_config.json` (as `transformers` does),
    all-or-nothing (`saving.staged_save`). `is_main_process=False` writes nothing.

    Raises:
        ValueError: `directory` exists and is not a folder.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"save_pretrained: {directory} exists and is not a directory")
    if not options.is_main_process:
        return directory
    bare = class_name.removeprefix("TF")
    order = {spec.name: i for i, spec in enumerate(expected_params(bare, config))}
    ordered = dict(sorted(arrays.items(), key=lambda item: order.get(item[0], len(order))))  # one order, both trees
    with staged_save(directory, fmt, options.variant) as work:  # all-or-nothing: config.json lands last
        write_weights(
            work,
            ordered,
            options,
            fmt=fmt,
            bf16_names=bf16_names,
            class_name=bare,
            config=config,
            total_parameters=total_parameters,
        )
        config.architectures = [bare]
        config.dtype = dtype_name
        config.save_pretrained(work)
        if generation_config is not None:
            generation_config.save_pretrained(work)
    return directory
