"""`tf_model.h5` writing in the layout of `transformers`' TF port (REFERENCE §3), with h5py only.

Names and layouts come from `blip_core.weights` (renames.canonical_to_tf, layouts.to_keras). The LM-head
decoder is written even when tied: the TF port leaves a missing decoder random.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.atomic import atomic_path
from blip_core.weights import expected_params, tied_pairs
from blip_core.weights.layouts import to_keras
from blip_core.weights.renames import TF_SCOPES, canonical_to_tf


def write_tf_h5(path: Path, tensors: Mapping[str, np.ndarray], class_name: str, config: Any) -> Path:
    """Write canonical tensors as a Keras-2 HDF5 weights file named like the TF port's."""
    import h5py

    specs = {spec.name: spec for spec in expected_params(class_name, config)}
    values = dict(tensors)
    for pair in tied_pairs(class_name, config):
        if pair.alias.endswith("decoder.weight") and pair.alias not in values and pair.source in values:
            values[pair.alias] = values[pair.source]
    scope = TF_SCOPES[class_name]
    groups: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name, value in values.items():
        if name.endswith("decoder.bias") and name not in tensors:
            continue  # TF adds cls.predictions.bias itself
        spec = specs[name]
        tf_name = canonical_to_tf(name, spec.kind, class_name)
        groups.setdefault(tf_name.split("/", 1)[0], []).append(
            (f"{scope}/{tf_name}:0", to_keras(value, spec.kind, spec.leaf))
        )
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["backend"] = "tensorflow"
        h5.attrs["keras_version"] = "2.15.0"
        h5.attrs["layer_names"] = np.array([group.encode() for group in groups])
        for group_name, weights in groups.items():
            group = h5.create_group(group_name)
            group.attrs["weight_names"] = np.array([weight_name.encode() for weight_name, _ in weights])
            for weight_name, value in weights:
                group.create_dataset(weight_name, data=np.asarray(value, order="C"))
    return path
