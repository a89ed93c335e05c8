"""Record what `transformers` 4.57.6 does with empty batches and inputs longer than the model (the oracle).

    .venv-oracle/bin/python -m tests.tools.make_limits_golden

Writes tests/golden/limits.json (output shapes where `transformers` handles an empty batch, the exception it
raises where it does not) and tests/golden/limits.npz (the values of the non-empty side of mixed batches).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import transformers

from tests.helpers.compare import flatten
from tests.helpers.limit_cases import CASES
from tests.tools.make_torch_golden import build

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"


def run(class_name: str, arrays: dict, kwargs: dict):
    model, _ = build(class_name)
    kwargs = dict(kwargs)
    method = kwargs.pop("method", None)
    target = getattr(model, method) if method else model
    with torch.no_grad():
        return target(**{k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}, **kwargs)


def main() -> None:
    meta, arrays = {"made_by": {"transformers": transformers.__version__, "torch": torch.__version__}}, {}
    for name, (class_name, inputs, kwargs) in CASES.items():
        try:
            out = run(class_name, inputs, kwargs)
        except Exception as err:  # record what transformers raises: the point of these cases
            meta[name] = {"raises": type(err).__name__, "message": str(err)[:200]}
            continue
        flat = flatten(out if isinstance(out, dict) else {"": out})
        meta[name] = {"shapes": {key: list(value.shape) for key, value in flat.items()}}
        arrays.update({f"{name}::{key}": value for key, value in flat.items() if value.size})
    (GOLDEN / "limits.json").write_text(json.dumps(meta, indent=1) + "\n")
    np.savez_compressed(GOLDEN / "limits.npz", **arrays)


if __name__ == "__main__":
    main()
