"""Check exported graphs in ONNX Runtime against the source model, as `optimum`'s exporter does: every output
of every graph on sample inputs of sizes other than the ones traced with, and the decoder end to end (a
prompt, then one cached step) against the model's own text decoder. Float32 graphs must agree within the
tolerance; int8 graphs are reported, not judged (their quality is measured on data: docs/deployment.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from blip_onnx.layout import TASK_GRAPHS, graph_file, graph_names

# Sizes to check with: one row of one token (axes of size 1 and no cache), and a beam-like batch with a cache.
CHECK_SIZES = ({"batch": 1, "group": 1, "seq": 1, "past": 0}, {"batch": 2, "group": 3, "seq": 2, "past": 3})


@dataclass
class CheckRow:
    graph: str
    output: str
    max_difference: float
    tolerance: float | None
    dtype: str = "float32"

    @property
    def passed(self) -> bool:
        return self.tolerance is None or self.max_difference <= self.tolerance


@dataclass
class CheckReport:
    """The largest absolute difference of each graph output from the source model."""

    rows: list[CheckRow] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def with_int8(self, other: CheckReport) -> CheckReport:
        return CheckReport(self.rows + [replace(row, dtype="int8") for row in other.rows if row.dtype == "int8"])

    def table(self) -> str:
        lines = [f"{'graph':<18} {'output':<16} {'dtype':<8} {'max |diff|':>12}  result"]
        for row in self.rows:
            verdict = "ok" if row.tolerance is None and row.dtype != "float32" else "ok" if row.passed else "FAIL"
            limit = "reported" if row.tolerance is None else f"<= {row.tolerance:g}"
            lines.append(
                f"{row.graph:<18} {row.output:<16} {row.dtype:<8} {row.max_difference:>12.3g}  {verdict} ({limit})"
            )
        return "\n".join(lines)


def _torch_outputs(module: Any, graph: str, inputs: dict[str, np.ndarray], layers: int) -> list[np.ndarray]:
    """The module's outputs on a graph's inputs (by name), flattened in the graph's output order."""
    import torch

    from blip_conversion.onnx_graphs import flat_outputs, module_arguments

    tensors = {name: torch.from_numpy(value) for name, value in inputs.items()}
    with torch.no_grad():
        out = module(*module_arguments(graph, tensors, layers))
    return [t.numpy() for t in flat_outputs(out)]


def check_folder(
    folder: Path, model: Any, task: str, tolerance: float | None, graphs: dict[str, Any] | None = None
) -> CheckReport:
    """Run every graph of `folder` in ONNX Runtime and compare with `model` (a float32 blip_torch model).

    `graphs` (the manifest's entries: file and dtype) default to the float32 files. Rows of float32 graphs
    carry `tolerance`; int8 rows carry None.

    Raises:
        RuntimeError: a float32 output differs by more than `tolerance` (the message holds the table).
    """
    from blip_conversion.onnx_graphs import _module, sample_inputs
    from blip_onnx.sessions import GraphSession, session_options

    graphs = graphs or {name: {"file": graph_file(name), "dtype": "float32"} for name in TASK_GRAPHS[task]}
    options = session_options()
    report = CheckReport()
    for name in TASK_GRAPHS[task]:
        entry = graphs[name]
        limit = tolerance if entry["dtype"] == "float32" else None
        layers = model.config.text_config.num_hidden_layers
        session = GraphSession(folder, name, entry, layers, options)
        outputs = graph_names(name, layers)[1]
        worst = dict.fromkeys((_row_name(output) for output in outputs), 0.0)
        for index, sizes in enumerate(CHECK_SIZES):
            patches = model.config.vision_config.image_size // model.config.vision_config.patch_size
            inputs = sample_inputs(model.config, name, {**sizes, "tokens": patches * patches + 1}, seed=index + 1)
            expected = _torch_outputs(_module(model, name).eval(), name, inputs, layers)
            found = session(**inputs)
            for output, reference in zip(outputs, expected, strict=True):
                worst[_row_name(output)] = max(worst[_row_name(output)], _difference(found[output], reference))
        report.rows += [CheckRow(name, output, value, limit, entry["dtype"]) for output, value in worst.items()]
    if "decoder" in graphs:
        report.rows += _decoder_end_to_end(folder, model, graphs, tolerance, options)
    if not report.passed:
        raise RuntimeError(f"the exported graphs differ from the source model:\n{report.table()}")
    return report


def _row_name(output: str) -> str:
    """Per-layer outputs share a row: `present_key_3` -> `present_key_*` (the largest difference over layers)."""
    stem, _, layer = output.rpartition("_")
    return f"{stem}_*" if layer.isdigit() else output


def _difference(found: np.ndarray, expected: np.ndarray) -> float:
    if found.shape != expected.shape:
        return float("inf")
    if not found.size:
        return 0.0
    return float(np.max(np.abs(found.astype(np.float64) - expected.astype(np.float64))))


def _decoder_end_to_end(folder: Path, model: Any, graphs: dict[str, Any], tolerance: float | None, options: Any):
    """The decoding path of the runtime (`blip_onnx.runner`: `decoder_cross`, then the decoder fed a
    left-padded prompt, then one token from its cache) against the model's own text decoder run on the whole
    text each time (last-position logits)."""
    import torch

    from blip_onnx.runner import OnnxDecoderRunner
    from blip_onnx.sessions import GraphSession

    quantized = any(graphs[name]["dtype"] != "float32" for name in ("decoder", "decoder_cross"))
    limit, dtype = (None, "int8") if quantized else (tolerance, "float32")
    text = model.config.text_config
    layers = text.num_hidden_layers
    rng = np.random.default_rng(7)
    states = rng.standard_normal((2, 9, text.encoder_hidden_size)).astype(np.float32)
    prompt = rng.integers(1, text.vocab_size, (2, 4), dtype=np.int64)
    mask = np.array([[0, 1, 1, 1], [1, 1, 1, 1]], np.int64)
    positions = np.clip(np.cumsum(mask, 1) - 1, 0, None)
    following = rng.integers(1, text.vocab_size, (2, 1), dtype=np.int64)
    sessions = [GraphSession(folder, name, graphs[name], layers, options) for name in ("decoder", "decoder_cross")]
    runner = OnnxDecoderRunner(*sessions, states, None, text.vocab_size, layers)
    first = runner.start(prompt, mask, positions, 5)
    second = runner.step(following, positions[:, -1:] + 1, np.concatenate([mask, np.ones((2, 1), np.int64)], 1))
    whole = np.concatenate([prompt, following], 1)
    whole_mask = np.concatenate([mask, np.ones((2, 1), np.int64)], 1)
    with torch.no_grad():
        logits = model.text_decoder(
            input_ids=torch.from_numpy(whole),
            attention_mask=torch.from_numpy(whole_mask),
            position_ids=torch.from_numpy(np.concatenate([positions, positions[:, -1:] + 1], 1)),
            encoder_hidden_states=torch.from_numpy(states),
            return_dict=True,
        ).logits.numpy()
    found = {"decoder (prompt)": (first, -2), "decoder (step)": (second, -1)}
    return [
        CheckRow(name, "logits", _difference(out, logits[:, column]), limit, dtype)
        for name, (out, column) in found.items()
    ]
