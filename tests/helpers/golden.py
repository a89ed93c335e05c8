"""Access to the committed golden files; a missing file fails, it never skips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def golden_path(name: str) -> Path:
    path = GOLDEN / name
    if not path.is_file():
        raise FileNotFoundError(f"golden file {path} is missing: regenerate it with the scripts in tests/tools/")
    return path


def load_json(name: str) -> Any:
    return json.loads(golden_path(name).read_text(encoding="utf-8"))


def load_npz(name: str) -> dict[str, np.ndarray]:
    with np.load(golden_path(name)) as data:
        return {key: data[key] for key in data.files}
