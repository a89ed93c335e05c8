"""`blip-convert to-onnx --int8`: rewrite chosen graphs of an exported folder with ONNX Runtime's quantization.

Two schemes, both ONNX Runtime's own tools:

- "dynamic" (`onnxruntime.quantization.quantize_dynamic`, the default): MatMul and Gemm weights int8, one scale
  per output channel; activations quantized to uint8 per call (`DynamicQuantizeLinear` + `MatMulInteger`, fused
  by ONNX Runtime into `DynamicQuantizeMatMul`). The products run in integer kernels (VNNI where the CPU has it).
  Weights use 7 bits (`reduce_range`): on AVX2 and AVX-512 CPUs without VNNI, ONNX Runtime's uint8 x int8
  kernel sums pairs of products in 16 bits, which full-range weights can overflow (saturate); with 7 bits they
  cannot, so the same export gives the same accuracy on every x86 CPU.
- "weight8" (`MatMulNBitsQuantizer`, bits=8): MatMul weights int8 in blocks of 32, dequantized on the fly;
  activations stay float32 (accuracy level 1). Gemm (the LM head) stays float32. Measured several times
  slower than float32 in ONNX Runtime 1.32 on CPU: kept for comparison (`benchmarks/onnx_speed.py`).

Which graphs are quantized by default was decided by measurement (`benchmarks/onnx_quality.py` on the demo
models' held-out set, `benchmarks/onnx_speed.py` at base size): see `QUANTIZED_GRAPHS`. Embedding tables
(Gather), layer norms and the attention products (activation x activation) always stay float32.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from blip_onnx.layout import TASK_GRAPHS, graph_file
from blip_onnx.sessions import require

SCHEMES = {
    "dynamic": "dynamic, per-channel int8 weights (7-bit range), uint8 activations (MatMul, Gemm)",
    "weight8": "weight-only int8, blocks of 32, float32 activations (MatMul)",
}
DEFAULT_SCHEME = "dynamic"
# Graphs quantized per task: all of them. Measured: on the demo models' held-out set no variant (vision only,
# text only, all) changed a caption or an answer, and at base size every graph's time is mostly its MatMuls
# (the cross keys/values graph too: it runs once per image, 8 images per beam-search batch).
QUANTIZED_GRAPHS: dict[str, tuple[str, ...]] = {
    "caption": ("vision_encoder", "decoder_cross", "decoder"),
    "vqa": ("vision_encoder", "question_encoder", "decoder_cross", "decoder"),
    "itm": ("image_encoder", "text_encoder", "itm"),
}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantizers log every node at INFO (and advice at WARNING on the root logger): errors only."""
    loggers = [logging.getLogger(name) for name in ("onnxruntime", "onnxruntime.quantization", "")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.level, logging.ERROR))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def quantize_graph(source: Path, target: Path, scheme: str = DEFAULT_SCHEME) -> None:
    """Write `source` (a float32 ONNX graph) quantized with `scheme` to `target`.

    Raises:
        ValueError: an unknown scheme.
        ImportError: onnxruntime or onnx missing (names the `blip-dual[onnx]` extra).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"int8 scheme must be one of {sorted(SCHEMES)}, got {scheme!r}")
    require("onnxruntime")
    require("onnx")
    with _quiet():
        if scheme == "dynamic":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(
                str(source),
                str(target),
                op_types_to_quantize=["MatMul", "Gemm"],
                per_channel=True,
                reduce_range=True,
                weight_type=QuantType.QInt8,
            )
            return
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(
            onnx.load(str(source)),
            bits=8,
            block_size=32,
            is_symmetric=True,
            accuracy_level=1,
            op_types_to_quantize=("MatMul",),
        )
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), use_external_data_format=False)


def quantize_folder(
    folder: Path,
    graphs: Mapping[str, Mapping[str, Any]],
    task: str,
    chosen: Iterable[str] | None = None,
    scheme: str = DEFAULT_SCHEME,
) -> dict[str, dict[str, Any]]:
    """Quantize the `chosen` graphs of an exported folder in place (default: `QUANTIZED_GRAPHS[task]`).

    `graphs` are the manifest entries ({name: {"file", "dtype"}}); each file is replaced atomically (written
    beside it, then renamed). Returns the updated entries: quantized graphs get `"dtype": "int8"` and
    `"quantization"` (the scheme's description).

    Raises:
        ValueError: an unknown task or scheme, or a chosen graph that the task does not have.
    """
    if task not in TASK_GRAPHS:
        raise ValueError(f"task must be one of {sorted(TASK_GRAPHS)}, got {task!r}")
    chosen = tuple(QUANTIZED_GRAPHS[task] if chosen is None else chosen)
    unknown = sorted(set(chosen) - set(graphs))
    if unknown:
        raise ValueError(f"cannot quantize {unknown}: the {task} export has graphs {sorted(graphs)}")
    if scheme not in SCHEMES:
        raise ValueError(f"int8 scheme must be one of {sorted(SCHEMES)}, got {scheme!r}")
    updated = {name: dict(entry) for name, entry in graphs.items()}
    for name in chosen:
        path = Path(folder) / updated[name].get("file", graph_file(name))
        partial = path.with_name(f".{path.name}.int8-partial")
        try:
            quantize_graph(path, partial, scheme)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        updated[name].update(dtype="int8", quantization=SCHEMES[scheme])
    return updated
