"""`blip-convert to-onnx`: every head's graphs checked against blip_torch, the folder it writes, its refusals,
and the ONNX Runtime classes and pipelines against blip_torch's on the same seeded checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import blip_torch
from blip_conversion.cli import main
from blip_conversion.onnx_check import CheckReport, _row_name
from blip_conversion.onnx_export import export_onnx
from blip_core import pipeline
from blip_onnx import OnnxBlipForConditionalGeneration, OnnxBlipForImageTextRetrieval, OnnxBlipForQuestionAnswering
from blip_onnx.layout import MANIFEST, TASK_GRAPHS, TASK_OF_CLASS, graph_names, read_manifest
from tests.helpers.small import write_small_models

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.xdist_group("onnx-export")

HEADS = list(TASK_OF_CLASS)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each head's seeded small checkpoint (real vocabulary, processor files) and its export:
    {class name: (checkpoint, export folder, report)}."""
    root = tmp_path_factory.mktemp("onnx")
    checkpoints = write_small_models(root)
    found = {}
    for class_name in HEADS:
        folder, report = export_onnx(checkpoints[class_name], root / f"{class_name}-onnx")
        found[class_name] = (checkpoints[class_name], folder, report)
    found["BlipModel"] = (checkpoints["BlipModel"], None, None)
    return found


@pytest.mark.parametrize("class_name", HEADS)
def test_every_graph_output_is_checked_against_blip_torch(exported, class_name):
    _, folder, report = exported[class_name]
    task = TASK_OF_CLASS[class_name]
    assert isinstance(report, CheckReport) and report.passed
    checked = {(row.graph, row.output) for row in report.rows}
    layers = read_config_layers(folder)
    expected = {(graph, output) for graph in TASK_GRAPHS[task] for output in graph_names(graph, layers)[1]}
    assert checked >= {(graph, _row_name(output)) for graph, output in expected}
    assert any(name.endswith("_*") for _, name in checked) == (task != "itm")  # per-layer outputs share a row
    assert all(row.tolerance == 1e-4 and row.max_difference <= 1e-4 for row in report.rows)
    if task != "itm":  # the decoder end to end: a prompt, then a cached step, against the model's own decoder
        assert {"decoder (prompt)", "decoder (step)"} <= {row.graph for row in report.rows}
    manifest = read_manifest(folder)
    assert manifest["task"] == task and manifest["architecture"] == class_name
    assert {entry["dtype"] for entry in manifest["graphs"].values()} == {"float32"}
    for name in ("config.json", "preprocessor_config.json", "vocab.txt"):
        assert (folder / name).is_file(), name


def read_config_layers(folder) -> int:
    return json.loads((folder / "config.json").read_text())["text_config"]["num_hidden_layers"]


def _pixels(model, count: int, seed: int = 0) -> np.ndarray:
    size = model.config.vision_config.image_size
    return np.random.default_rng(seed).standard_normal((count, 3, size, size)).astype(np.float32)


def test_retrieval_scores_and_features_match_blip_torch(exported):
    checkpoint, folder, _ = exported["BlipForImageTextRetrieval"]
    source = blip_torch.BlipForImageTextRetrieval.from_pretrained(checkpoint).eval()
    model = OnnxBlipForImageTextRetrieval.from_pretrained(folder)
    pixels = _pixels(source, 3)
    ids = np.array([[101, 7, 9, 102, 0], [101, 5, 102, 0, 0], [101, 4, 8, 6, 102]])
    mask = (ids != 0).astype(np.int64)
    with torch.no_grad():
        args = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        itm = source(pixel_values=torch.from_numpy(pixels), **args).itm_score.numpy()
        itc = source(pixel_values=torch.from_numpy(pixels), use_itm_head=False, **args).itm_score.numpy()
        one_image = source(pixel_values=torch.from_numpy(pixels[:1]), **args).itm_score.numpy()
        text_features = source.get_text_features(**args).numpy()
    np.testing.assert_allclose(model(ids, pixels, attention_mask=mask).itm_score, itm, atol=1e-4)
    np.testing.assert_allclose(model(ids, pixels, attention_mask=mask, use_itm_head=False).itm_score, itc, atol=1e-4)
    np.testing.assert_allclose(model(ids, pixels[:1], attention_mask=mask).itm_score, one_image, atol=1e-4)
    np.testing.assert_allclose(model.get_text_features(ids, mask), text_features, atol=1e-4)


def _pipelines(folder, task: str, checkpoint):
    """The same task in blip_torch and in ONNX Runtime."""
    return pipeline(task, model=str(checkpoint), framework="pt"), pipeline(task, model=str(folder), framework="onnx")


def test_pipelines_in_onnx_runtime_give_blip_torchs_results(exported):
    images = [_image(seed) for seed in range(3)]
    checkpoint, folder, _ = exported["BlipForConditionalGeneration"]
    pt, onnx = _pipelines(folder, "image-to-text", checkpoint)
    for options in ({"max_new_tokens": 6}, {"max_new_tokens": 6, "num_beams": 3}):
        assert onnx(images, batch_size=2, **options) == pt(images, batch_size=2, **options)
    prompted = {"prompt": "a photo of", "max_new_tokens": 5}
    assert onnx(images[0], **prompted) == pt(images[0], **prompted)
    checkpoint, folder, _ = exported["BlipForQuestionAnswering"]
    pt, onnx = _pipelines(folder, "visual-question-answering", checkpoint)
    questions = ["what is it?", "how many are there in the picture?"]
    assert onnx(images[0], question=questions, max_new_tokens=4) == pt(images[0], question=questions, max_new_tokens=4)
    checkpoint, folder, _ = exported["BlipForImageTextRetrieval"]
    pt, onnx = _pipelines(folder, "image-text-matching", checkpoint)
    found, expected = onnx(images[0], text=["a cat", "two dogs"]), pt(images[0], text=["a cat", "two dogs"])
    assert len(found) == len(expected) == 2
    for mine, theirs in zip(found, expected, strict=True):
        assert mine["text"] == theirs["text"]
        assert mine["itm_score"] == pytest.approx(theirs["itm_score"], abs=1e-4)
        assert mine["itc_score"] == pytest.approx(theirs["itc_score"], abs=1e-4)


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (24, 31, 3), dtype=np.uint8)


def test_an_export_folder_chooses_onnx_and_refuses_the_trees(exported):
    _, folder, _ = exported["BlipForConditionalGeneration"]
    assert pipeline("image-to-text", model=str(folder)).framework == "onnx"
    with pytest.raises(ValueError, match="ONNX export.*framework='onnx'"):
        pipeline("image-to-text", model=str(folder), framework="pt")
    with pytest.raises(ValueError, match="needs a 'vqa' one"):
        OnnxBlipForQuestionAnswering.from_pretrained(folder)
    with pytest.raises(ValueError, match="float32"):
        OnnxBlipForConditionalGeneration.from_pretrained(folder, dtype="bfloat16")
    model = OnnxBlipForConditionalGeneration.from_pretrained(folder)
    with pytest.raises(ValueError, match=r"pixel_values must have shape \(batch, 3, 48, 48\)"):
        model.generate(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="interpolate_pos_encoding"):
        model.generate(_pixels(model, 1), interpolate_pos_encoding=True)
    assert model.generate(np.zeros((0, 3, 48, 48), np.float32)).shape == (0, 1)


RUN_WITHOUT_FRAMEWORKS = """
import sys, numpy as np
from blip_core import pipeline
pipe = pipeline("image-to-text", model=sys.argv[1], framework="onnx")
print(pipe(np.full((20, 20, 3), 90, np.uint8), max_new_tokens=4, num_beams=2)[0]["generated_text"] is not None)
loaded = sorted(m for m in ("torch", "tensorflow", "keras", "jax") if m in sys.modules)
print("frameworks:", loaded)
"""


def test_onnx_runtime_pipelines_import_no_framework(exported):
    _, folder, _ = exported["BlipForConditionalGeneration"]
    out = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_FRAMEWORKS, str(folder)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2:] == ["frameworks: []", ""] and "True" in out.stdout


def test_existing_destination_needs_force_and_nothing_is_lost(exported, tmp_path, capsys):
    checkpoint, _, _ = exported["BlipForImageTextRetrieval"]
    destination = tmp_path / "out"
    destination.mkdir()
    (destination / "keep.txt").write_text("mine")
    assert main(["to-onnx", str(checkpoint), str(destination)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert [p.name for p in destination.iterdir()] == ["keep.txt"]
    assert main(["to-onnx", str(checkpoint), str(destination), "--force"]) == 0
    printed = capsys.readouterr().out
    assert "itm_logits" in printed and "FAIL" not in printed and f"wrote {destination}" in printed
    assert (destination / MANIFEST).is_file() and not (destination / "keep.txt").exists()


def test_a_failed_check_writes_nothing(exported, tmp_path):
    checkpoint, _, _ = exported["BlipForImageTextRetrieval"]
    with pytest.raises(RuntimeError, match="differ from the source model"):
        export_onnx(checkpoint, tmp_path / "out", tolerance=-1.0)
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


def test_refusals_name_the_problem(exported, tmp_path, capsys, monkeypatch):
    checkpoint, _, _ = exported["BlipForConditionalGeneration"]
    with pytest.raises(ValueError, match="--task vqa does not fit"):
        export_onnx(checkpoint, tmp_path / "a", task="vqa")
    with pytest.raises(ValueError, match="opset must be an integer from 17 to 23"):
        export_onnx(checkpoint, tmp_path / "b", opset=9)
    base = exported["BlipModel"][0]
    assert main(["to-onnx", str(base), str(tmp_path / "c")]) == 2
    assert "'BlipModel' has no ONNX export" in capsys.readouterr().err
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    assert main(["to-onnx", str(checkpoint), str(tmp_path / "d")]) == 2
    assert "pip install 'blip-dual[onnx]'" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_hostile_or_foreign_folders_are_refused(exported, tmp_path):
    _, folder, _ = exported["BlipForConditionalGeneration"]
    with pytest.raises(OSError, match="blip-convert to-onnx"):
        OnnxBlipForConditionalGeneration.from_pretrained(tmp_path)
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["graphs"]["decoder"]["file"] = "../decoder.onnx"
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="names file '../decoder.onnx'"):
        OnnxBlipForConditionalGeneration.from_pretrained(copy)
    manifest["graphs"]["decoder"]["file"] = "decoder.onnx"
    (copy / MANIFEST).write_text(json.dumps(manifest))
    (copy / "decoder.onnx").write_bytes(b"not a graph")
    with pytest.raises(ValueError, match="ONNX Runtime cannot load this graph"):
        OnnxBlipForConditionalGeneration.from_pretrained(copy)


def test_bad_token_ids_are_a_clear_error(exported):
    _, folder, _ = exported["BlipForImageTextRetrieval"]
    model = OnnxBlipForImageTextRetrieval.from_pretrained(folder)
    with pytest.raises(ValueError, match="input_ids"):
        model.get_text_features(np.array([[101, 10**6]]))
    with pytest.raises(ValueError, match=r"input_ids must have shape \(batch, length\)"):
        model.get_text_features(np.array([101, 102]))


def test_the_blip_command_runs_an_export_with_framework_onnx(exported, tmp_path, capsys):
    from PIL import Image

    from blip_core.cli.main import main as blip

    image = tmp_path / "image.png"
    Image.fromarray(_image(3)).save(image)
    checkpoint, folder, _ = exported["BlipForQuestionAnswering"]
    outputs = []
    for framework, model in (("onnx", folder), ("pt", checkpoint)):
        code = blip(["vqa", "--framework", framework, "--model", str(model), "--question", "what?", str(image)])
        assert code == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0].startswith(str(image))
    checkpoint, folder, _ = exported["BlipForConditionalGeneration"]
    assert blip(["caption", "--model", str(folder), "--num-beams", "2", str(image)]) == 0  # the folder says onnx
    onnx_caption = capsys.readouterr().out
    assert blip(["caption", "--framework", "pt", "--model", str(checkpoint), "--num-beams", "2", str(image)]) == 0
    assert onnx_caption == capsys.readouterr().out


def test_an_onnx_pipeline_saves_a_folder_that_reloads(exported, tmp_path):
    _, folder, _ = exported["BlipForConditionalGeneration"]
    pipe = pipeline("image-to-text", model=str(folder))
    pipe.save_pretrained(tmp_path / "saved")
    again = pipeline("image-to-text", model=str(tmp_path / "saved"))
    assert again.framework == "onnx"
    assert again(_image(5), max_new_tokens=5) == pipe(_image(5), max_new_tokens=5)


def test_a_checkpoint_given_as_an_export_says_how_to_export_it(exported):
    checkpoint, _, _ = exported["BlipForConditionalGeneration"]
    with pytest.raises(OSError, match=f"is a checkpoint, not an ONNX export.*to-onnx {checkpoint} OUT_DIR"):
        pipeline("image-to-text", model=str(checkpoint), framework="onnx")
    _, folder, _ = exported["BlipForConditionalGeneration"]
    with pytest.raises(ValueError, match="runs on the CPU"):
        OnnxBlipForConditionalGeneration.from_pretrained(folder, device="cuda")
    with pytest.raises(ValueError, match="runs on the CPU"):
        pipeline("image-to-text", model=str(folder), device="cuda:0")
    assert OnnxBlipForConditionalGeneration.from_pretrained(folder, device="cpu").dtype == "float32"


def test_a_file_in_the_way_is_named_before_force_is_suggested(exported, tmp_path, capsys):
    checkpoint, _, _ = exported["BlipForImageTextRetrieval"]
    (tmp_path / "afile").write_text("mine")
    for extra in ([], ["--force"]):
        assert main(["to-onnx", str(checkpoint), str(tmp_path / "afile"), *extra]) == 2
        assert "exists and is not a folder" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_hub_manifest_naming_paths_is_refused_before_downloading(exported, tmp_path, monkeypatch):
    import blip_onnx.models

    _, folder, _ = exported["BlipForConditionalGeneration"]
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["graphs"]["decoder"]["file"] = "../../elsewhere/decoder.onnx"
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    requested = []

    def resolve(repo, name, **hub):
        requested.append(name)
        return str(tmp_path / name)

    monkeypatch.setattr(blip_onnx.models, "resolve_file", resolve)
    with pytest.raises(ValueError, match="not a plain file name"):
        OnnxBlipForConditionalGeneration.from_pretrained("someone/captioner-onnx")
    assert "../../elsewhere/decoder.onnx" not in requested
