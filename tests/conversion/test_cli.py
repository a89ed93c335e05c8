"""`blip-convert` errors: one line on stderr, exit code 2, nothing left behind."""

from __future__ import annotations

import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from blip_conversion.cli import main
from tests.helpers.original import original_state, save_original
from tests.helpers.tiny import seeded_weights, tiny_config

VQA_CONFIG = tiny_config(text_config={"hidden_size": 24})


@pytest.fixture
def original(tmp_path):
    VQA_CONFIG.save_pretrained(tmp_path / "cfg")
    weights = seeded_weights("BlipForQuestionAnswering", VQA_CONFIG, seed=2)
    return tmp_path, weights, str(tmp_path / "cfg" / "config.json")


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(list(argv)))
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("blip-convert: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_converts(capsys, original):
    tmp_path, weights, config = original
    save_original(tmp_path / "ok.pth", original_state(weights))
    code, out, _ = run_cli(
        capsys,
        "from-original",
        str(tmp_path / "ok.pth"),
        str(tmp_path / "out"),
        "--task",
        "vqa",
        "--image-size",
        "40",
        "--config",
        config,
    )
    assert code == 0 and "wrote" in out and (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.parametrize(
    "case,fragments",
    [
        ("missing", ["missing (1)", "text_decoder.cls.predictions.transform.dense.weight"]),
        ("shape", ["wrong shape (1)", "text_encoder.encoder.layer.0.output.dense.weight"]),
        ("wrong_task", ["does not fit BlipForImageTextRetrieval", "missing"]),
        ("truncated", ["not a torch zip archive"]),
        ("malicious", ["refused to load", "system"]),
    ],
)
def test_bad_checkpoints_fail_in_one_line_and_leave_nothing(capsys, original, case, fragments):
    tmp_path, weights, config = original
    state = original_state(weights)
    path = tmp_path / f"{case}.pth"
    task = "vqa"
    if case == "missing":
        del state["text_decoder.cls.predictions.transform.dense.weight"]
    elif case == "shape":
        state["text_encoder.encoder.layer.0.output.dense.weight"] = np.zeros((24, 36), np.float32)
    elif case == "wrong_task":
        task = "itm"
    if case == "malicious":

        class Evil:
            def __reduce__(self):
                import os

                return (os.system, ("echo pwned",))

        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", pickle.dumps({"model": {"w": Evil()}}, protocol=2))
    else:
        save_original(path, state)
    if case == "truncated":
        path.write_bytes(path.read_bytes()[:500])
    code, _, err = run_cli(
        capsys,
        "from-original",
        str(path),
        str(tmp_path / "out"),
        "--task",
        task,
        "--image-size",
        "40",
        "--config",
        config,
    )
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_usage_errors_are_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "from-original", "x.pth", str(tmp_path / "o"), "--task", "captioning")
    assert_one_line_error(code, err, "invalid choice: 'captioning'")
    code, _, err = run_cli(capsys, "to-safetensors", str(tmp_path / "nowhere"), str(tmp_path / "o"))
    assert_one_line_error(code, err, "nowhere")


def test_module_and_console_entry_points(tmp_path):
    out = subprocess.run([sys.executable, "-m", "blip_conversion", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "to-safetensors" in out.stdout and "from-original" in out.stdout


def test_to_keras_output_converts_back(capsys, tmp_path, tiny_checkpoints):
    """The issue's report: `blip-convert to-keras SRC DST`, then `blip-convert to-safetensors DST OUT` ("no weights
    found" before): bit-exact back to the source's tensors."""
    from blip_core.checkpoints.sources import open_file, read_all

    source = tiny_checkpoints["BlipForQuestionAnswering"]
    code, out, _ = run_cli(capsys, "to-keras", str(source), str(tmp_path / "keras"))
    assert code == 0 and (tmp_path / "keras" / "model.weights.h5").exists()
    code, out, err = run_cli(capsys, "to-safetensors", str(tmp_path / "keras"), str(tmp_path / "back"))
    assert code == 0, err
    expected = read_all(open_file(source / "model.safetensors"))
    back = read_all(open_file(tmp_path / "back" / "model.safetensors"))
    assert sorted(back) == sorted(expected)
    assert all(
        back[name].dtype == value.dtype and np.array_equal(back[name], value) for name, value in expected.items()
    )


def test_hostile_keras_weights_fail_in_one_line(capsys, tmp_path, tiny_checkpoints):
    import h5py

    source = tiny_checkpoints["BlipVisionModel"]
    code, _, _ = run_cli(capsys, "to-keras", str(source), str(tmp_path / "keras"))
    assert code == 0
    with h5py.File(tmp_path / "keras" / "model.weights.h5", "a") as h5:
        h5["embeddings/evil"] = h5py.ExternalLink("/etc/passwd", "/")
    code, _, err = run_cli(capsys, "to-safetensors", str(tmp_path / "keras"), str(tmp_path / "out"))
    assert_one_line_error(code, err, "model.weights.h5", "ExternalLink; only hard links are followed")
    assert not (tmp_path / "out").exists()
