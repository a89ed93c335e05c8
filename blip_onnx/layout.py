"""What an exported folder holds: the graphs of each task, their inputs and outputs, and the manifest.

Shared by the exporter (`blip_conversion.onnx_export`) and the runtime (`blip_onnx.models`), so that the
names are written once. Shapes use B (images or texts), G (rows per image: beams, returned sequences),
S (new tokens), P (cached tokens), T (encoder tokens), L (decoder layers), H (heads), d (head size).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MANIFEST = "onnx_config.json"
FORMAT, FORMAT_VERSION = "blip-dual-onnx", 1
# Opset 18: every onnxruntime since 1.14 runs it, its quantization tools handle it, and it has the fused
# LayerNormalization (opset 17) the exporter emits.
DEFAULT_OPSET = 18

TASK_OF_CLASS = {
    "BlipForConditionalGeneration": "caption",
    "BlipForQuestionAnswering": "vqa",
    "BlipForImageTextRetrieval": "itm",
}
CLASS_OF_TASK = {task: name for name, task in TASK_OF_CLASS.items()}

# graph -> (inputs, outputs), in the order of the graph's signature; "{i}" names stand for one tensor per decoder
# layer (`graph_names` expands them), the cache of layer i.
GRAPHS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "vision_encoder": (("pixel_values",), ("image_embeds",)),
    "question_encoder": (("input_ids", "attention_mask", "image_embeds"), ("question_embeds",)),
    "decoder_cross": (("encoder_hidden_states",), ("cross_key_{i}", "cross_value_{i}")),
    "decoder": (
        (
            "input_ids",
            "position_ids",
            "attention_mask",
            "past_attention_mask",
            "past_key_{i}",
            "past_value_{i}",
            "cross_key_{i}",
            "cross_value_{i}",
            "encoder_attention_mask",
        ),
        ("logits", "present_key_{i}", "present_value_{i}"),
    ),
    "image_encoder": (("pixel_values",), ("image_embeds", "image_features")),
    "text_encoder": (("input_ids", "attention_mask"), ("text_features",)),
    "itm": (("input_ids", "attention_mask", "image_embeds"), ("itm_logits",)),
}
TASK_GRAPHS = {
    "caption": ("vision_encoder", "decoder_cross", "decoder"),
    "vqa": ("vision_encoder", "question_encoder", "decoder_cross", "decoder"),
    "itm": ("image_encoder", "text_encoder", "itm"),
}


def graph_names(graph: str, layers: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The inputs and outputs of `graph` for a decoder of `layers` layers, in signature order."""
    return tuple(expand(names, layers) for names in GRAPHS[graph])  # type: ignore[return-value]


def expand(names: tuple[str, ...], layers: int) -> tuple[str, ...]:
    """Each "{i}" name once per layer (0 .. layers - 1), the others once."""
    return tuple(name.format(i=i) for name in names for i in (range(layers) if "{i}" in name else (0,)))


def graph_file(name: str) -> str:
    return f"{name}.onnx"


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an exported folder, checked.

    Raises:
        OSError: the folder or its manifest is missing (the message says how to export one).
        ValueError: the manifest is not one this version reads, or names a graph file that is missing.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        if (folder / "config.json").is_file():  # a checkpoint: it is the source of an export, not its destination
            raise OSError(
                f"{folder} is a checkpoint, not an ONNX export (no {MANIFEST}): export it with "
                f"`blip-convert to-onnx {folder} OUT_DIR` and load OUT_DIR, or run it with framework='pt' or 'tf'"
            )
        raise OSError(
            f"{folder} is not an ONNX export of this library (no {MANIFEST}); "
            f"write one with: blip-convert to-onnx MODEL {folder}"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {manifest.get('version')!r}; this library reads {FORMAT_VERSION}")
    task = manifest.get("task")
    if task not in TASK_GRAPHS:
        raise ValueError(f"{path}: task {task!r} is not one of {sorted(TASK_GRAPHS)}")
    graphs = manifest.get("graphs")
    if not isinstance(graphs, dict) or set(graphs) != set(TASK_GRAPHS[task]):
        raise ValueError(f"{path}: graphs must be {list(TASK_GRAPHS[task])}, got {graphs!r}")
    for name, entry in graphs.items():
        file = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(file, str) or Path(file).name != file or not (folder / file).is_file():
            raise ValueError(f"{path}: graph {name!r} names file {file!r}, which is not in {folder}")
    return manifest
