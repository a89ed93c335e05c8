"""`pytorch_model.bin` writing (a `torch.save` archive): the one format that needs torch, imported when used."""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.io.atomic import atomic_path


def write_bin(
    path: str | Path,
    tensors: Mapping[str, np.ndarray],
    bf16_names: frozenset[str] = frozenset(),
    save_function: Callable[[Any, Any], Any] | None = None,
) -> Path:
    """Save an OrderedDict of torch tensors atomically with `save_function` (default `torch.save`).

    Names in `bf16_names` hold uint16 bfloat16 bit patterns and are written as bfloat16 tensors; one array
    object given under several names (a tied alias) is written once, its tensors sharing that storage.

    Raises:
        RuntimeError: torch is not installed.
    """
    try:
        import torch
    except ImportError:
        raise RuntimeError("writing pytorch_model.bin needs torch: pip install 'blip-dual[torch]'") from None
    state, made = collections.OrderedDict(), {}
    for name, value in tensors.items():
        if id(value) not in made:  # one array given under two names (a tied alias) stays one storage
            array = np.array(value, copy=True)
            tensor = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16) if name in bf16_names else None
            made[id(value)] = torch.from_numpy(array) if tensor is None else tensor
        state[name] = made[id(value)]
    path = Path(path)
    with atomic_path(path) as tmp:
        (save_function or torch.save)(state, str(tmp))
    return path
