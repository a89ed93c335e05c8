"""Small HDF5 weight files built by hand (no TensorFlow): the TF port's Keras-2 layout and Keras 3's."""

from __future__ import annotations

import numpy as np


def write_tf_h5(path, scope: str, groups: dict[str, dict[str, np.ndarray]]) -> None:
    """A Keras-2 HDF5 weights file laid out as `transformers`' TF save_pretrained writes it."""
    import h5py

    with h5py.File(path, "w") as h5:
        h5.attrs["backend"] = "tensorflow"
        h5.attrs["keras_version"] = "2.15.0"
        h5.attrs["layer_names"] = np.array([g.encode() for g in groups])
        for group_name, weights in groups.items():
            group = h5.create_group(group_name)
            names = [f"{scope}/{name}" for name in weights]
            group.attrs["weight_names"] = np.array([n.encode() for n in names])
            for full, value in zip(names, weights.values(), strict=True):
                group.create_dataset(full, data=value)


def write_keras3(path, layers: dict[str, tuple[str | None, list[np.ndarray]]]) -> None:
    """A Keras 3 weights file: group path -> (layer name stored on its `vars` group, variables in order)."""
    import h5py

    with h5py.File(path, "w") as h5:
        for group_path, (name, variables) in layers.items():
            group = h5.create_group(f"{group_path}/vars" if group_path else "vars")
            if name is not None:
                group.attrs["name"] = name
            for index, value in enumerate(variables):
                group.create_dataset(str(index), data=value)
