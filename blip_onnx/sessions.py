"""ONNX Runtime sessions for the graphs of an exported folder, and the optional-dependency check."""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from blip_onnx.layout import graph_file, graph_names

EXTRA = "onnx"


def require(module: str, extra: str = EXTRA) -> None:
    """Raise ImportError naming the extra to install when `module` is missing."""
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{module} is not installed: pip install 'blip-dual[{extra}]'")


class GraphSession:
    """One graph in ONNX Runtime: called with NumPy inputs by name, returns its outputs by name (`layers`: the
    text decoder's, which sets the per-layer cache names)."""

    def __init__(self, folder: Path, name: str, entry: dict[str, Any], layers: int, options: Any = None) -> None:
        require("onnxruntime")
        import onnxruntime

        self.name = name
        self.path = folder / entry.get("file", graph_file(name))
        self.inputs, self.outputs = graph_names(name, layers)
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types for unreadable graphs
            raise ValueError(f"{self.path}: ONNX Runtime cannot load this graph: {err}") from None
        found = tuple(item.name for item in self.session.get_inputs())
        if set(found) != set(self.inputs):
            raise ValueError(f"{self.path}: graph inputs {found}, expected {self.inputs}")

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        feed = {name: np.ascontiguousarray(inputs[name]) for name in self.inputs}
        return dict(zip(self.outputs, self.session.run(list(self.outputs), feed), strict=True))


def session_options(threads: int | None = None) -> Any:
    """Session options: `threads` intra-op threads (default: ONNX Runtime's, one per core); graph
    optimizations on (ONNX Runtime fuses attention and layer norms)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    threads = threads if threads is not None else int(os.environ.get("BLIP_ONNX_THREADS", "0") or 0)
    if threads:
        options.intra_op_num_threads = threads
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options
