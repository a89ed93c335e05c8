"""Read Keras 3 weights files (`model.save_weights("model.weights.h5")`, `blip-convert to-keras`) as
canonical tensors in PyTorch layout, with h5py only.

Keras 3 stores each layer's own variables as datasets `<path>/vars/0`, `1`, ... in creation order, and
(from Keras 3.6 on) the layer's `name` as an attribute of its `vars` group. The group paths follow
Keras' object walk (class names of list items, `layers/...` under models) and say little; the names say
everything, because every `blip_tf` layer is named by its checkpoint key segment (`vision_model`,
`layers_._3`, `output`, ...). A variable's canonical name is therefore the names of the layers above it,
then the parameter of its owner at that position, taken from `blip_core.weights.names` (PyTorch
registration order, which the TF twins follow). A sharded save (`model.weights.json` and its
`*_NNNNN.weights.h5` shards) is read as one source: a layer's name may sit in another shard than its
variables.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.checkpoints.h5_reader import (
    H5_ERRORS,
    H5ReadError,
    _decode,
    dataset_dtype,
    open_h5,
    read_attr,
    read_dataset,
    resolve,
    walk,
)
from blip_core.weights.layouts import from_keras, shape_from_keras
from blip_core.weights.names import CONV2D, EMBEDDING, LINEAR, MODEL_CLASSES, NORM, RAW, expected_params

VARS = "vars"
_LAYER_NAME = re.compile(r"[\w.\-]{1,256}")
_INDEX = re.compile(r"\d{1,6}")
_NUMBER = re.compile(r"(?<=\.)\d+(?=\.|$)")
# The number of dimensions each kind of parameter has in Keras layout (raw parameters: any).
_NDIM: dict[tuple[str, str], int] = {
    (LINEAR, "weight"): 2,
    (LINEAR, "bias"): 1,
    (CONV2D, "weight"): 4,
    (CONV2D, "bias"): 1,
    (NORM, "weight"): 1,
    (NORM, "bias"): 1,
    (EMBEDDING, "weight"): 2,
}


class KerasWeightsError(H5ReadError):
    """A Keras weights file that cannot be read as BLIP weights; names the file and the dataset."""


def _pattern(owner: str) -> str:
    """An owner path with its layer numbers generalised: `encoder.layers.3.mlp` -> `encoder.layers.#.mlp`."""
    return _NUMBER.sub("#", owner)


@functools.cache
def owner_parameters() -> dict[str, tuple[tuple[str, str], ...]]:
    """Owner pattern -> its own parameters (leaf, kind) in creation order, for every BLIP class."""
    from blip_core.config.configuration import BlipConfig

    config = BlipConfig(text_config={"num_hidden_layers": 1}, vision_config={"num_hidden_layers": 1})
    sub_configs = {"BlipVisionModel": config.vision_config, "BlipTextModel": config.text_config}
    sub_configs["BlipTextLMHeadModel"] = config.text_config
    table: dict[str, tuple[tuple[str, str], ...]] = {}
    for class_name in MODEL_CLASSES:
        owners: dict[str, list[tuple[str, str]]] = {}
        for spec in expected_params(class_name, sub_configs.get(class_name, config)):
            owner = spec.name.rpartition(".")[0]
            owners.setdefault(_pattern(owner), []).append((spec.leaf, spec.kind))
        for pattern, leaves in owners.items():
            if table.setdefault(pattern, tuple(leaves)) != tuple(leaves):
                raise AssertionError(f"owner {pattern!r} has different parameters in different classes")
    return table


def _layer_names(files: Sequence[tuple[Path, Any]]) -> dict[str, str]:
    """Group path -> the layer name stored on its `vars` group, over every shard.

    A layer whose variables spill into the next shard has an unnamed `vars` group there.
    """
    names: dict[str, str] = {}
    unnamed: dict[str, tuple[Path, str]] = {}
    for path, h5file in files:
        for group_path, node in walk(h5file, path):
            if group_path != VARS and not group_path.endswith("/" + VARS):
                continue
            owner = group_path[: -len(VARS)].rstrip("/")
            raw = read_attr(node, "name", path)
            if raw is None:
                unnamed.setdefault(owner, (path, group_path))
                continue
            name = _decode(raw)
            if not _LAYER_NAME.fullmatch(name):
                raise KerasWeightsError(f"{path}: group {group_path!r} has an invalid layer name {name[:80]!r}")
            if names.setdefault(owner, name) != name:
                raise KerasWeightsError(f"{path}: group {group_path!r} is named {name!r} and {names[owner]!r}")
    for owner, (path, group_path) in unnamed.items():
        if owner not in names:
            raise KerasWeightsError(
                f"{path}: group {group_path!r} stores no layer name: a Keras 3 weights file written by Keras "
                "older than 3.6; build the model (TFBlip...(config)), call its load_weights on this file, then "
                "save_pretrained it"
            )
    return names


def _owner(group: str, names: dict[str, str]) -> str:
    """Canonical name of the layer at `group`: the names of the layers on its path (root excluded)."""
    parts = group.split("/") if group else []
    segments = []
    for end in range(1, len(parts) + 1):
        name = names.get("/".join(parts[:end]))
        if name is not None:  # None: a container (`layers`, a list attribute) whose items carry the names
            segments.append(name.replace("_._", "."))
    return ".".join(segments)


class KerasWeightsFile:
    """Keras 3 weights (one `.weights.h5`, or every shard of a sharded save) as one tensor source."""

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike]) -> None:
        paths = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
        if not paths:
            raise ValueError("KerasWeightsFile needs at least one file")
        self.path = paths[0] if len(paths) == 1 else paths[0].parent
        self._files: list[tuple[Path, Any]] = []
        try:
            for path in paths:
                self._files.append((path, open_h5(path)))
            self._entries = self._index()
        except BaseException:
            self.close()
            raise

    def _index(self) -> dict[str, tuple[int, str, str, str]]:
        """Canonical name -> (file number, dataset path, kind, leaf)."""
        import h5py

        names = _layer_names(self._files)
        table = owner_parameters()
        entries: dict[str, tuple[int, str, str, str]] = {}
        for number, (path, h5file) in enumerate(self._files):
            for dataset_path, node in walk(h5file, path):
                if not isinstance(node, h5py.Dataset):
                    continue
                group, _, index = dataset_path.rpartition("/")
                if not (group == VARS or group.endswith("/" + VARS)) or not _INDEX.fullmatch(index):
                    raise KerasWeightsError(f"{path}: dataset {dataset_path!r} is not a numbered Keras variable")
                owner = _owner(group[: -len(VARS)].rstrip("/"), names)
                dataset_dtype(node, path, dataset_path)
                name, kind, leaf = self._canonical(owner, int(index), table)
                expected_ndim = _NDIM.get((kind, leaf))
                if expected_ndim is not None and node.ndim != expected_ndim:
                    raise KerasWeightsError(
                        f"{path}: dataset {dataset_path!r} ({name}) has {node.ndim} dimensions, "
                        f"expected {expected_ndim}"
                    )
                if name in entries:
                    raise KerasWeightsError(f"{path}: two datasets map to {name!r} ({dataset_path!r})")
                entries[name] = (number, dataset_path, kind, leaf)
        return entries

    @staticmethod
    def _canonical(owner_name: str, index: int, table: dict) -> tuple[str, str, str]:
        """(name, kind, leaf) of variable `index` of `owner_name`; an unknown one gets a name that says so."""
        leaves = table.get(_pattern(owner_name), ())
        if index >= len(leaves):
            leaf, kind = f"vars.{index}", RAW
        else:
            leaf, kind = leaves[index]
        return (f"{owner_name}.{leaf}" if owner_name else leaf), kind, leaf

    def _dataset(self, name: str) -> tuple[Path, str, Any, str, str]:
        number, dataset_path, kind, leaf = self._entries[name]
        path, h5file = self._files[number]
        return path, dataset_path, resolve(h5file, dataset_path, path), kind, leaf

    def keys(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        _, _, dataset, kind, leaf = self._dataset(name)
        return shape_from_keras(dataset.shape, kind, leaf)

    def dtype(self, name: str) -> str:
        path, dataset_path, dataset, _, _ = self._dataset(name)
        return dataset_dtype(dataset, path, dataset_path)

    def get(self, name: str) -> np.ndarray:
        path, dataset_path, dataset, kind, leaf = self._dataset(name)
        return np.asarray(from_keras(read_dataset(dataset, path, dataset_path), kind, leaf), order="C")

    def close(self) -> None:
        for _, h5file in self._files:
            h5file.close()
        self._files = []


def is_keras3_weights(h5file: Any) -> bool:
    """Whether an open h5 file has the Keras 3 layout (`vars` groups) rather than the Keras-2 one.

    Looks at link names only: no link is followed to decide. Raises `H5ReadError` for a damaged file.
    """
    try:
        if "layer_names" in h5file.attrs:
            return False
        return any(h5file.get(name, getlink=True) is not None for name in (VARS, "layers"))
    except H5_ERRORS as err:
        raise H5ReadError(f"{h5file.filename}: cannot read its root group: {err}") from None
