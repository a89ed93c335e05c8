"""`blip-convert to-onnx`: a checkpoint's task graphs as ONNX files that ONNX Runtime runs alone.

Each graph of `onnx_graphs` goes through `torch.export.export` (dynamic axes) and `torch.onnx.export`'s
exporter for exported programs (onnxscript), is written into a temporary folder with the config, the
generation settings, the processor files and a manifest, then checked in ONNX Runtime against the source
model (`onnx_check`); the folder takes its place only when every check passed. `--int8` then rewrites the
chosen graphs with ONNX Runtime's dynamic quantization (`onnx_quantize`).

Why torch.onnx rather than tf2onnx: the graphs are written once, as the export modules of
`blip_torch.export` (which `torch.export`, ExecuTorch and AOTInductor users need anyway), the exporter
keeps dynamic axes as named symbols, and tf2onnx does not support Keras 3 models.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from blip_conversion.output import check_destination, output_folder
from blip_onnx.layout import (
    CLASS_OF_TASK,
    DEFAULT_OPSET,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    TASK_OF_CLASS,
    graph_file,
    graph_names,
)
from blip_onnx.sessions import require

EXPORT_EXTRA = "onnx"


def task_of(class_name: str | None, task: str | None, source: Any) -> str:
    """The task to export: `task` if given (it must fit the checkpoint's class), else the class's own.

    Raises:
        ValueError: a class without an ONNX export, or a task that does not fit it.
    """
    declared = TASK_OF_CLASS.get(class_name or "")
    if declared is None:
        raise ValueError(
            f"{source}: {class_name!r} has no ONNX export; exported classes: {sorted(TASK_OF_CLASS)} "
            f"(tasks {sorted(CLASS_OF_TASK)})"
        )
    if task is not None and task != declared:
        raise ValueError(f"--task {task} does not fit {source}, a {class_name} checkpoint (its task is {declared})")
    return declared


def _export_graph(spec: Any, path: Path, opset: int, layers: int) -> None:
    """One graph: torch.export with its dynamic axes, then ONNX (weights inside the file up to 2 GB)."""
    import torch

    with torch.no_grad():
        program = torch.export.export(spec.module, spec.example, dynamic_shapes=spec.axes)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # its progress lines
        warnings.simplefilter("ignore")
        inputs, outputs = graph_names(spec.name, layers)
        onnx_program = torch.onnx.export(
            program,
            (),
            dynamo=True,
            opset_version=opset,
            input_names=list(inputs),
            output_names=list(outputs),
            verbose=False,
        )
    onnx_program.save(str(path), external_data=None)


def _load_model(source: str, class_name: str, hub: Mapping[str, Any]) -> Any:
    import torch

    import blip_torch

    model = getattr(blip_torch, class_name).from_pretrained(source, torch_dtype=torch.float32, **hub)
    return model.eval()


def export_onnx(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    task: str | None = None,
    opset: int = DEFAULT_OPSET,
    int8: bool = False,
    force: bool = False,
    hub: Mapping[str, Any] | None = None,
    tolerance: float = 1e-4,
) -> tuple[Path, Any]:
    """Export the graphs of a checkpoint's task into `destination` and check them in ONNX Runtime.

    Returns (the folder, the `onnx_check.CheckReport` of every graph output against the source model).

    Raises:
        ImportError: torch, onnx, onnxscript or onnxruntime missing (names the `blip-dual[onnx]` extra).
        FileExistsError: `destination` exists and `force` is false (nothing read or written).
        ValueError: a checkpoint class without export, a task that does not fit, a bad opset.
        RuntimeError: a float32 graph differs from the source model by more than `tolerance`; nothing is
            written then.
    """
    from blip_conversion.convert import _copy_processor_files, load_config
    from blip_conversion.onnx_check import check_folder
    from blip_conversion.onnx_graphs import graph_specs

    check_destination(destination, force, source)
    for module in ("torch", "onnx", "onnxscript", "onnxruntime"):
        require(module, EXPORT_EXTRA)
    if isinstance(opset, bool) or not isinstance(opset, int) or not 17 <= opset <= 23:
        raise ValueError(f"opset must be an integer from 17 to 23, got {opset!r}")
    hub = dict(hub or {})
    _, class_name = load_config(source, hub)
    task = task_of(class_name, task, source)
    model = _load_model(str(source), class_name, hub)
    specs = graph_specs(model, task)
    with output_folder(destination, force) as folder:
        for spec in specs:
            _export_graph(spec, folder / graph_file(spec.name), opset, model.config.text_config.num_hidden_layers)
        model.config.architectures = [class_name]
        model.config.save_pretrained(folder)
        _copy_processor_files(source, folder, hub, model.config.vision_config.image_size)
        _write_generation_config(model, folder)
        graphs = {spec.name: {"file": graph_file(spec.name), "dtype": "float32"} for spec in specs}
        report = check_folder(folder, model, task, tolerance)
        if int8:
            from blip_conversion.onnx_quantize import quantize_folder

            graphs = quantize_folder(folder, graphs, task)
            report = report.with_int8(check_folder(folder, model, task, None, graphs))
        _write_manifest(folder, task, class_name, opset, graphs)
    return Path(destination), report


def _write_generation_config(model: Any, folder: Path) -> None:
    """The model's generation settings travel with the graphs (the runtime reads them like the trees do)."""
    config = getattr(model, "generation_config", None)
    if config is not None and not (folder / "generation_config.json").exists():
        config.save_pretrained(folder)


def _write_manifest(folder: Path, task: str, class_name: str, opset: int, graphs: dict[str, Any]) -> None:
    import onnxruntime
    import torch

    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "task": task,
        "architecture": class_name,
        "opset": opset,
        "graphs": graphs,
        "exported_with": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

