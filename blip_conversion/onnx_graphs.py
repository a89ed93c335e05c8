"""The graphs `blip-convert to-onnx` writes for each task: the export modules of `blip_torch.export`, example
inputs to trace them with, their dynamic axes, and sample inputs to check them with.

Example inputs give every dynamic axis a different size of at least 2 (an exporter treats sizes 0 and 1, and
equal sizes, as facts about the graph); the declared ranges still admit 1 (and 0 cached tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from blip_onnx.layout import GRAPHS, TASK_GRAPHS, graph_names

MAX_ROWS = 65536


@dataclass
class GraphSpec:
    """One graph to export: its module, example inputs (torch tensors) and per-input dynamic axes."""

    name: str
    module: Any
    example: tuple
    axes: dict[str, dict[int, Any]]


def _dims(config: Any) -> dict[str, Any]:
    from torch.export import Dim

    text = config.text_config
    return {
        "batch": Dim("batch", min=1, max=MAX_ROWS),
        "group": Dim("group", min=1, max=MAX_ROWS),
        "seq": Dim("seq", min=1, max=text.max_position_embeddings),
        "past": Dim("past", min=0, max=text.max_position_embeddings),
        "tokens": Dim("tokens", min=1, max=MAX_ROWS),
    }


def sample_inputs(config: Any, graph: str, sizes: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """NumPy inputs of `graph` with the given axis sizes (batch, group, seq, past, tokens), seeded."""
    rng = np.random.default_rng(seed)
    text, vision = config.text_config, config.vision_config
    batch, group, seq, past = sizes["batch"], sizes["group"], sizes["seq"], sizes["past"]
    tokens = sizes["tokens"]
    layers, heads = text.num_hidden_layers, text.num_attention_heads
    head_size = text.hidden_size // heads

    def ids(*shape: int) -> np.ndarray:
        return rng.integers(0, text.vocab_size, shape, dtype=np.int64)

    def mask(*shape: int) -> np.ndarray:
        out = np.ones(shape, np.int64)
        if shape[-1] > 1:  # one padded position in the first row, never a row of nothing
            out[(0,) * len(shape)] = 0
        return out

    def floats(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    size = vision.image_size
    values = {
        "pixel_values": floats(batch, 3, size, size),
        "image_embeds": floats(batch, tokens, vision.hidden_size),
        "encoder_hidden_states": floats(batch, tokens, text.encoder_hidden_size),
        "encoder_attention_mask": mask(batch, tokens),
        "past_attention_mask": mask(batch, group, past),
    }
    for i in range(layers):
        for kind in ("key", "value"):
            values[f"cross_{kind}_{i}"] = floats(batch, heads, tokens, head_size)
            values[f"past_{kind}_{i}"] = floats(batch, group, heads, past, head_size)
    if graph == "decoder":
        values["input_ids"] = ids(batch, group, seq)
        values["position_ids"] = np.broadcast_to(np.arange(past, past + seq), (batch, group, seq)).copy()
        values["attention_mask"] = np.ones((batch, group, seq), np.int64)
    else:
        values["input_ids"] = ids(batch, seq)
        values["attention_mask"] = mask(batch, seq)
    return {name: values[name] for name in graph_names(graph, layers)[0]}


def module_arguments(graph: str, inputs: dict[str, Any], layers: int) -> tuple:
    """A graph's inputs by name (NumPy or torch) as its module's positional arguments: the per-layer
    names of one kind gathered into one list (`past_key_{i}` -> `past_keys`)."""
    arguments = []
    for name in GRAPHS[graph][0]:
        if "{i}" in name:
            arguments.append([inputs[name.format(i=i)] for i in range(layers)])
        else:
            arguments.append(inputs[name])
    return tuple(arguments)


def flat_outputs(outputs: Any) -> list:
    """A module's outputs (tensors, or lists of per-layer tensors) in the order of the graph's output names."""
    flat = []
    for item in outputs if isinstance(outputs, (tuple, list)) else (outputs,):
        flat.extend(item if isinstance(item, list) else [item])
    return flat


def _module(model: Any, graph: str) -> Any:
    from blip_torch import export

    if graph == "vision_encoder":
        return export.VisionEncoderGraph(model.vision_model)
    if graph == "question_encoder":
        return export.QuestionEncoderGraph(model.text_encoder)
    if graph == "decoder_cross":
        return export.CrossKeysValuesGraph(model.text_decoder)
    if graph == "decoder":
        return export.DecoderGraph(model.text_decoder)
    if graph == "image_encoder":
        return export.ImageFeaturesGraph(model)
    if graph == "text_encoder":
        return export.TextFeaturesGraph(model)
    return export.ImageTextMatchingGraph(model)


def _axes(graph: str, dims: dict[str, Any], layers: int) -> dict[str, Any]:
    """`torch.export`'s dynamic_shapes of a graph's module, by argument (a list of axes for per-layer lists)."""
    batch, group, seq, past, tokens = (dims[k] for k in ("batch", "group", "seq", "past", "tokens"))
    text_axes = {0: batch, 1: seq}
    table = {
        "pixel_values": {0: batch},
        "image_embeds": {0: batch, 1: tokens},
        "encoder_hidden_states": {0: batch, 1: tokens},
        "cross_key_{i}": {0: batch, 2: tokens},
        "cross_value_{i}": {0: batch, 2: tokens},
        "encoder_attention_mask": {0: batch, 1: tokens},
        "past_key_{i}": {0: batch, 1: group, 3: past},
        "past_value_{i}": {0: batch, 1: group, 3: past},
        "past_attention_mask": {0: batch, 1: group, 2: past},
    }
    if graph == "decoder":
        table.update({name: {0: batch, 1: group, 2: seq} for name in ("input_ids", "position_ids", "attention_mask")})
    else:
        table.update({"input_ids": text_axes, "attention_mask": dict(text_axes)})
    return {
        ARGUMENT_NAMES.get(name, name): [dict(table[name]) for _ in range(layers)] if "{i}" in name else table[name]
        for name in GRAPHS[graph][0]
    }


# The module argument that holds each per-layer input.
ARGUMENT_NAMES = {
    "past_key_{i}": "past_keys",
    "past_value_{i}": "past_values",
    "cross_key_{i}": "cross_keys",
    "cross_value_{i}": "cross_values",
}


# Example sizes for tracing: all different, none 0 or 1.
EXAMPLE_SIZES = {"batch": 3, "group": 2, "seq": 4, "past": 5}


def graph_specs(model: Any, task: str) -> list[GraphSpec]:
    """The graphs of `task` over a loaded float32 blip_torch `model`, ready for `torch.export.export`."""
    import torch

    config = model.config
    tokens = config.vision_config.image_size // config.vision_config.patch_size
    sizes = {**EXAMPLE_SIZES, "tokens": tokens * tokens + 1}
    dims = _dims(config)
    specs = []
    layers = config.text_config.num_hidden_layers
    for graph in TASK_GRAPHS[task]:
        example = {name: torch.from_numpy(value) for name, value in sample_inputs(config, graph, sizes, 0).items()}
        arguments = module_arguments(graph, example, layers)
        specs.append(GraphSpec(graph, _module(model, graph).eval(), arguments, _axes(graph, dims, layers)))
    return specs
