"""`pytorch_model.bin` writing: the one format that needs torch."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from blip_core.atomic import atomic_path


def write_bin(path: Path, tensors: Mapping[str, np.ndarray]) -> Path:
    """`torch.save` of an OrderedDict of tensors, atomically."""
    try:
        import torch
    except ImportError:
        raise RuntimeError("writing pytorch_model.bin needs torch: pip install 'blip-dual[torch]'") from None
    state = collections.OrderedDict(
        (name, torch.from_numpy(np.array(value, copy=True))) for name, value in tensors.items()
    )
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path
