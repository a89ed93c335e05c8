"""The trained demo models that ship with the package: quality on held-out images, the same
results in both frameworks, `blip demo`, and the training script's reproducibility."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blip_core import pipeline
from blip_core.demo.runs import demo_models_present, run_demo_models
from blip_core.demo.tasks import DEMO_MODELS_DIR, exact_match, held_out, roc_auc
from tests.helpers.compare import assert_outputs_close

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = 60  # held-out images scored (indices 1000..1059, away from the ones `blip demo` shows)


@pytest.fixture(scope="module")
def runs():
    held = held_out(SAMPLE, start=1000)
    return held, {framework: run_demo_models(framework, held) for framework in ("pt", "tf")}


def test_demo_models_ship_small_and_complete():
    assert demo_models_present()
    size = sum(path.stat().st_size for path in DEMO_MODELS_DIR.rglob("*") if path.is_file())
    assert size <= 30 * 2**20, f"demo models take {size / 2**20:.1f} MB"
    for folder in DEMO_MODELS_DIR.iterdir():
        assert {"config.json", "model.safetensors", "preprocessor_config.json", "vocab.txt"} <= {
            p.name for p in folder.iterdir()
        }


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_quality_on_held_out_images(runs, framework):
    held, by_framework = runs
    run = by_framework[framework]
    captions = exact_match(run.captions, [scene.caption for scene in held.scenes])
    answers = exact_match(run.answers, held.answers)
    labels = np.concatenate([np.ones(SAMPLE), np.zeros(SAMPLE)])
    auc = roc_auc(np.concatenate([run.match_probability[:, 0], run.match_probability[:, 1]]), labels)
    assert captions >= 0.9, list(zip(run.captions, [s.caption for s in held.scenes], strict=True))
    assert answers >= 0.9, list(zip(held.questions, run.answers, held.answers, strict=True))
    assert auc >= 0.95


def test_frameworks_give_the_same_ids_and_outputs(runs):
    _, by_framework = runs
    pt, tf = by_framework["pt"].outputs(), by_framework["tf"].outputs()
    assert np.array_equal(pt["caption ids"], tf["caption ids"])
    assert np.array_equal(pt["answer ids"], tf["answer ids"])
    assert_outputs_close(tf, pt)


def test_blip_demo_prints_both_frameworks_side_by_side(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "blip_core.cli", "demo", "--count", "2", "--start", "6", "--save", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "blip_torch (PyTorch)" in out and "blip_tf (TensorFlow/Keras)" in out
    assert "same ids in both frameworks: True" in out
    first = held_out(1, start=6).scenes[0].caption
    assert out.count(repr(first)) >= 4  # truth, PyTorch caption, TensorFlow caption, the matched pair
    assert sorted(p.name for p in tmp_path.iterdir()) == ["held_out_6.png", "held_out_7.png"]


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_pipelines_default_to_the_demo_models_and_say_so(framework):
    held = held_out(2, start=20)
    with pytest.warns(UserWarning, match="embedded demo model.*synthetic shapes") as caught:
        captioner = pipeline("image-to-text", framework=framework)
    out = captioner(held.images)
    assert [row[0]["generated_text"] for row in out] == [scene.caption for scene in held.scenes]
    assert not [w for w in caught if "generation capped" in str(w.message)]


def test_blip_command_warns_in_one_line_when_it_uses_the_demo_model(tmp_path):
    image = tmp_path / "shape.png"
    held = held_out(1, start=21)
    held.images[0].save(image)
    result = subprocess.run(
        [sys.executable, "-m", "blip_core.cli", "caption", str(image)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{image}\t{held.scenes[0].caption}"
    warnings = [line for line in result.stderr.splitlines() if "demo model" in line]
    assert len(warnings) == 1 and warnings[0].startswith("blip: warning: no model given")
    assert "generation capped" not in result.stderr


@pytest.mark.slow  # trains twice (a few steps); the shipped models' quality is tested above
def test_training_script_is_reproducible_and_never_overwrites(tmp_path):
    def train(output: Path, *extra: str) -> subprocess.CompletedProcess:
        command = [
            sys.executable,
            "scripts/train_demo.py",
            "--output",
            str(output),
            "--scale",
            "0.002",
            "--eval-count",
            "4",
        ]
        return subprocess.run([*command, *extra], capture_output=True, text=True, timeout=600, cwd=ROOT)

    first, second = train(tmp_path / "a"), train(tmp_path / "b")
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:] + second.stderr[-2000:]
    for name in ("BlipForConditionalGeneration", "BlipForQuestionAnswering", "BlipForImageTextRetrieval"):
        weights = (tmp_path / "a" / name / "model.safetensors").read_bytes()
        assert weights == (tmp_path / "b" / name / "model.safetensors").read_bytes(), name
    again = train(tmp_path / "a")
    assert again.returncode == 2 and "--force" in again.stderr
    assert (tmp_path / "a" / "BlipForConditionalGeneration" / "model.safetensors").read_bytes() != b""
