"""`tf_model.h5` writing in the layout of `transformers`' TF port (REFERENCE §3), with h5py only.

Names and layouts come from `blip_core.weights` (renames.canonical_to_tf, layouts.to_keras). The LM-head
decoder is written even when tied: the TF port leaves a missing decoder random. A single file uses the
Keras-2 layout (`layer_names` groups holding `weight_names`); a shard uses the TF port's shard layout (one
dataset per weight, its path without the model scope, listed in `layer_names`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.io.atomic import atomic_path
from blip_core.weights import expected_params, tied_pairs
from blip_core.weights.layouts import to_keras
from blip_core.weights.renames import TF_SCOPES, canonical_to_tf

BF16 = "bfloat16"


@dataclass(frozen=True)
class H5Entry:
    """One weight as the TF port stores it: `scope/path/leaf:0`, Keras layout."""

    name: str  # with the model scope, e.g. tf_blip_for_conditional_generation/vision_model/.../kernel:0
    value: np.ndarray
    bf16: bool

    @property
    def path(self) -> str:
        """The name without the model scope (a group path in a single file, a dataset path in a shard)."""
        return self.name.split("/", 1)[1]


def tf_h5_entries(
    tensors: Mapping[str, np.ndarray], class_name: str, config: Any, bf16_names: frozenset[str] = frozenset()
) -> list[H5Entry]:
    """Canonical tensors (PyTorch layout) as the TF port's weights, in the order given (a tied decoder
    weight follows the tensors); the decoder bias only when the tensors hold it untied."""
    specs = {spec.name: spec for spec in expected_params(class_name, config)}
    values = dict(tensors)
    for pair in tied_pairs(class_name, config):
        if pair.alias.endswith("decoder.weight") and pair.alias not in values and pair.source in values:
            values[pair.alias] = values[pair.source]
            if pair.source in bf16_names:
                bf16_names = bf16_names | {pair.alias}
    scope = TF_SCOPES[class_name]
    entries = []
    for name, value in values.items():
        if name.endswith("decoder.bias") and name not in tensors:
            continue  # TF adds cls.predictions.bias itself
        spec = specs[name]
        tf_name = canonical_to_tf(name, spec.kind, class_name)
        entries.append(H5Entry(f"{scope}/{tf_name}:0", to_keras(value, spec.kind, spec.leaf), name in bf16_names))
    return entries


def _dataset(group: Any, name: str, entry: H5Entry) -> None:
    """One weight dataset; bfloat16 bit patterns stored as 2-byte opaque values tagged `dtype=bfloat16`
    (Keras 3's convention, which `blip_core.checkpoints.h5_reader` reads)."""
    value = np.asarray(entry.value, order="C")  # (ascontiguousarray would make a 0-d logit_scale 1-d)
    dataset = group.create_dataset(name, data=value.view("V2") if entry.bf16 else value)
    if entry.bf16:
        dataset.attrs["dtype"] = BF16


def write_tf_h5(
    path: str | Path,
    tensors: Mapping[str, np.ndarray],
    class_name: str,
    config: Any,
    bf16_names: frozenset[str] = frozenset(),
) -> Path:
    """Write canonical tensors as one Keras-2 HDF5 weights file named like the TF port's, atomically."""
    return write_h5_entries(path, tf_h5_entries(tensors, class_name, config, bf16_names))


def write_h5_entries(path: str | Path, entries: list[H5Entry]) -> Path:
    """A single `tf_model.h5`: one group per top-level layer, its weights listed in `weight_names`."""
    import h5py

    groups: dict[str, list[H5Entry]] = {}
    for entry in entries:
        groups.setdefault(entry.path.split("/", 1)[0], []).append(entry)
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["backend"] = "tensorflow"
        h5.attrs["keras_version"] = "2.15.0"
        h5.attrs["layer_names"] = np.array([group.encode() for group in groups])
        for group_name, weights in groups.items():
            group = h5.create_group(group_name)
            group.attrs["weight_names"] = np.array([entry.name.encode() for entry in weights])
            for entry in weights:
                _dataset(group, entry.name, entry)
    return path


def write_h5_shard(path: str | Path, entries: list[H5Entry]) -> Path:
    """One shard of a sharded `tf_model.h5`, as the TF port writes it: datasets at their scope-less paths,
    sorted, listed in `layer_names`."""
    import h5py

    ordered = sorted(entries, key=lambda entry: entry.name)
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        for entry in ordered:
            _dataset(h5, entry.path, entry)
        h5.attrs["layer_names"] = np.array([entry.path.encode() for entry in ordered])
    return path
