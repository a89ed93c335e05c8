"""`blip-convert to-onnx --int8`: ONNX Runtime's dynamic quantization of the chosen graphs (onnx_quantize).

A seeded tiny captioner is exported in float32 once; a copy is quantized as `--int8` does, and a VQA checkpoint
goes through the command itself. Checked: which graphs hold integer ops (and that embeddings stay float), the
manifest, atomic replacement, the runtime loading and generating from int8 graphs, and the int8 decoder's and
vision encoder's outputs within a bound of float32's.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.helpers.checkpoints import write_generation_checkpoint

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from blip_conversion.onnx_quantize import QUANTIZED_GRAPHS, SCHEMES, quantize_folder  # noqa: E402
from blip_onnx.layout import MANIFEST, TASK_GRAPHS  # noqa: E402

CAPTION = "BlipForConditionalGeneration"
INTEGER_OPS = {"MatMulInteger", "DynamicQuantizeLinear", "MatMulNBits"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(float32 folder, int8 folder) of a seeded tiny captioner; the int8 one quantized as `--int8` does."""
    from blip_conversion.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("int8")
    source = write_generation_checkpoint(CAPTION, "varied", root / "checkpoint")
    float_folder, _ = export_onnx(source, root / "fp32")
    int8_folder = root / "int8"
    shutil.copytree(float_folder, int8_folder)
    manifest = json.loads((int8_folder / MANIFEST).read_text())
    manifest["graphs"] = quantize_folder(int8_folder, manifest["graphs"], "caption")
    (int8_folder / MANIFEST).write_text(json.dumps(manifest))
    return float_folder, int8_folder


def _ops(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def _float_weight_matmuls(path) -> list[str]:
    """MatMul/Gemm nodes whose weight is a float initializer (what quantization should have replaced)."""
    model = onnx.load(str(path))
    weights = {item.name for item in model.graph.initializer if item.data_type == onnx.TensorProto.FLOAT}
    return [node.name for node in model.graph.node if node.op_type in ("MatMul", "Gemm") and node.input[1] in weights]


def test_int8_graphs_hold_integer_ops_and_the_rest_stays_float(exported):
    _, folder = exported
    manifest = json.loads((folder / MANIFEST).read_text())
    for name in TASK_GRAPHS["caption"]:
        entry, path = manifest["graphs"][name], folder / manifest["graphs"][name]["file"]
        if name in QUANTIZED_GRAPHS["caption"]:
            assert entry["dtype"] == "int8" and entry["quantization"] == SCHEMES["dynamic"]
            assert {"MatMulInteger", "DynamicQuantizeLinear"} <= _ops(path)
            assert _float_weight_matmuls(path) == []
        else:
            assert entry["dtype"] == "float32" and not _ops(path) & INTEGER_OPS
    decoder = onnx.load(str(folder / "decoder.onnx"))
    tables = {item.name: item.data_type for item in decoder.graph.initializer}
    gathered = [
        node.input[0] for node in decoder.graph.node if node.op_type.startswith("Gather") and node.input[0] in tables
    ]
    # the word and position embedding tables stay float
    assert len(gathered) == 2 and all(tables[name] == onnx.TensorProto.FLOAT for name in gathered)
    assert not [path.name for path in folder.iterdir() if "partial" in path.name]


def _decoder_inputs(config, seed: int = 0) -> dict[str, np.ndarray]:
    text = config.text_config
    rng = np.random.default_rng(seed)
    layers, heads, size = text.num_hidden_layers, text.num_attention_heads, text.hidden_size // text.num_attention_heads
    empty = np.zeros((2, 1, heads, 0, size), np.float32)
    return {
        "input_ids": rng.integers(1, text.vocab_size, (2, 1, 3), dtype=np.int64),
        "position_ids": np.broadcast_to(np.arange(3, dtype=np.int64), (2, 1, 3)).copy(),
        "attention_mask": np.ones((2, 1, 3), np.int64),
        "past_attention_mask": np.zeros((2, 1, 0), np.int64),
        **{f"past_{kind}_{i}": empty for i in range(layers) for kind in ("key", "value")},
        "encoder_attention_mask": np.ones((2, 5), np.int64),
    }


def test_int8_outputs_stay_within_bound_of_float32(exported):
    """Bound: per-channel int8 weights and per-call uint8 activations each round within half a step (1/254 of
    a channel's largest weight, 1/510 of the activations' range), so each product's relative error is near 1%;
    over the tiny decoder's few layers it stays well under 10% of the float output's largest magnitude. Not 0:
    the graphs really are quantized."""
    import blip_onnx

    float_folder, int8_folder = exported
    base = blip_onnx.OnnxBlipForConditionalGeneration.from_pretrained(float_folder)
    quantized = blip_onnx.OnnxBlipForConditionalGeneration.from_pretrained(int8_folder)
    assert quantized.quantized and not base.quantized
    size = base.config.vision_config.image_size
    pixels = np.random.default_rng(1).standard_normal((2, 3, size, size)).astype(np.float32)
    states = {m: m.graphs["vision_encoder"](pixel_values=pixels)["image_embeds"] for m in (base, quantized)}
    relative = np.abs(states[quantized] - states[base]).max() / np.abs(states[base]).max()
    assert 0 < relative < 0.1
    cross = base.graphs["decoder_cross"](encoder_hidden_states=states[base][:, :5])
    for name, value in quantized.graphs["decoder_cross"](encoder_hidden_states=states[base][:, :5]).items():
        assert 0 < np.abs(value - cross[name]).max() / np.abs(cross[name]).max() < 0.1
    inputs = {**_decoder_inputs(base.config), **cross}
    logits = {m: m.graphs["decoder"](**inputs)["logits"] for m in (base, quantized)}
    relative = np.abs(logits[quantized] - logits[base]).max() / np.abs(logits[base]).max()
    assert 0 < relative < 0.1


def test_int8_runtime_generates(exported):
    import blip_onnx

    _, folder = exported
    model = blip_onnx.OnnxBlipForConditionalGeneration.from_pretrained(folder)
    size = model.config.vision_config.image_size
    pixels = np.random.default_rng(2).standard_normal((2, 3, size, size)).astype(np.float32)
    greedy = model.generate(pixels, max_new_tokens=6, min_new_tokens=6)
    beams = model.generate(pixels, max_new_tokens=6, min_new_tokens=6, num_beams=3)
    for ids in (greedy, beams):
        assert ids.shape == (2, 7) and ids.dtype == np.int64
        assert (ids[:, 0] == model.config.text_config.bos_token_id).all()
        assert ((ids >= 0) & (ids < model.config.text_config.vocab_size)).all()


def test_cli_int8_export_of_a_vqa_checkpoint(tmp_path, capsys):
    import blip_onnx
    from blip_conversion.cli import main

    source = write_generation_checkpoint("BlipForQuestionAnswering", "varied", tmp_path / "checkpoint")
    assert main(["to-onnx", str(source), str(tmp_path / "out"), "--int8"]) == 0
    table = capsys.readouterr().out
    assert "int8" in table and "FAIL" not in table
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    dtypes = {name: entry["dtype"] for name, entry in manifest["graphs"].items()}
    assert dtypes == {name: "int8" if name in QUANTIZED_GRAPHS["vqa"] else "float32" for name in TASK_GRAPHS["vqa"]}
    model = blip_onnx.OnnxBlipForQuestionAnswering.from_pretrained(tmp_path / "out")
    size = model.config.vision_config.image_size
    pixels = np.random.default_rng(3).standard_normal((2, 3, size, size)).astype(np.float32)
    questions = np.array([[2, 50, 60, 3], [2, 70, 3, 0]])  # the tiny vocabulary has 99 ids
    ids = model.generate(questions, pixels, attention_mask=(questions != 0).astype(np.int64), max_new_tokens=4)
    assert ids.shape[0] == 2 and (ids[:, 0] == model.config.text_config.bos_token_id).all()


def test_only_the_chosen_graphs_are_quantized(exported, tmp_path):
    float_folder, _ = exported
    folder = tmp_path / "vision-only"
    shutil.copytree(float_folder, folder)
    graphs = json.loads((folder / MANIFEST).read_text())["graphs"]
    updated = quantize_folder(folder, graphs, "caption", chosen=["vision_encoder"])
    assert {name: entry["dtype"] for name, entry in updated.items()} == {
        "vision_encoder": "int8",
        "decoder_cross": "float32",
        "decoder": "float32",
    }
    assert "MatMulInteger" in _ops(folder / "vision_encoder.onnx")
    for name in ("decoder_cross", "decoder"):
        assert not _ops(folder / f"{name}.onnx") & INTEGER_OPS
        assert (folder / f"{name}.onnx").read_bytes() == (float_folder / f"{name}.onnx").read_bytes()


def test_bad_requests_name_the_problem(exported):
    _, folder = exported
    graphs = {name: {"file": f"{name}.onnx", "dtype": "float32"} for name in TASK_GRAPHS["caption"]}
    with pytest.raises(ValueError, match="scheme"):
        quantize_folder(folder, graphs, "caption", scheme="int4")
    with pytest.raises(ValueError, match="question_encoder"):
        quantize_folder(folder, graphs, "caption", chosen=["question_encoder"])
    with pytest.raises(ValueError, match="task"):
        quantize_folder(folder, graphs, "segmentation")
