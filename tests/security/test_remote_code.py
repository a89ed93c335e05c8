"""A `config.json` asking for remote code (`auto_map`, `custom_pipelines`) next to `.py` files: nothing is
imported or executed, with or without `trust_remote_code=True`, and each load says so once (a UserWarning
naming the keys), in both frameworks' `from_pretrained`, the Auto classes, `AutoConfig` and `pipeline`."""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import blip_core
from blip_core.config.configuration import BlipConfig
from blip_core.processing.auto import AutoConfig

MODULES = ("configuration_evil", "modeling_evil", "pipeline_evil")


@pytest.fixture
def hostile_folder(small_models, tmp_path) -> tuple[Path, Path]:
    """(checkpoint folder whose config.json names remote code, the marker file its .py files would write)."""
    folder = tmp_path / "model"
    shutil.copytree(small_models["BlipForConditionalGeneration"], folder)
    marker = tmp_path / "EXECUTED"
    for module in MODULES:
        (folder / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').write({module!r})\nraise SystemExit(3)\n")
    (folder / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('package')\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModel": "modeling_evil.EvilModel",
        "AutoModelForVision2Seq": "modeling_evil.EvilModel",
    }
    config["custom_pipelines"] = {"image-to-text": {"impl": "pipeline_evil.EvilPipeline", "pt": ["AutoModel"]}}
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


def _load_once(load) -> list[warnings.WarningMessage]:
    """Run `load`, returning the remote-code warnings it gave (every warning recorded, none deduplicated)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = load()
    assert result is not None
    return [w for w in caught if "remote code" in str(w.message)]


def _assert_nothing_ran(marker: Path) -> None:
    assert not marker.exists(), f"a checkpoint file was executed: {marker.read_text()}"
    assert not [name for name in sys.modules if name.endswith("_evil") or name == "model"]


def _check(load, marker: Path) -> None:
    found = _load_once(load)
    assert len(found) == 1, [str(w.message) for w in found]
    assert found[0].category is UserWarning
    message = str(found[0].message)
    assert "auto_map" in message and "custom_pipelines" in message and "config.json" in message
    _assert_nothing_ran(marker)


@pytest.mark.parametrize("trust", [None, True])
def test_torch_loads_warn_once_and_run_nothing(hostile_folder, trust):
    import blip_torch

    folder, marker = hostile_folder
    extra = {} if trust is None else {"trust_remote_code": trust}
    _check(lambda: blip_torch.BlipForConditionalGeneration.from_pretrained(folder, **extra), marker)
    _check(lambda: blip_torch.AutoModelForVision2Seq.from_pretrained(folder, **extra), marker)
    _check(lambda: blip_torch.AutoModel.from_pretrained(folder, **extra), marker)


def test_tf_loads_warn_once_and_run_nothing(hostile_folder):
    import blip_tf

    folder, marker = hostile_folder
    extra = {"trust_remote_code": True}
    _check(lambda: blip_tf.TFBlipForConditionalGeneration.from_pretrained(folder, **extra), marker)
    _check(lambda: blip_tf.TFAutoModel.from_pretrained(folder, **extra), marker)


@pytest.mark.parametrize("trust", [None, True])
def test_config_loads_warn_once_and_run_nothing(hostile_folder, trust):
    folder, marker = hostile_folder
    extra = {} if trust is None else {"trust_remote_code": trust}
    _check(lambda: AutoConfig.from_pretrained(folder, **extra), marker)
    _check(lambda: BlipConfig.from_pretrained(folder, **extra), marker)
    _check(lambda: BlipConfig.from_pretrained(folder / "config.json"), marker)


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_pipeline_warns_once_runs_nothing_and_captions(hostile_folder, framework):
    folder, marker = hostile_folder
    pipes = []

    def load():
        pipes.append(
            blip_core.pipeline("image-to-text", model=str(folder), framework=framework, trust_remote_code=True)
        )
        return pipes[-1]

    _check(load, marker)
    image = np.full((48, 48, 3), 128, dtype=np.uint8)
    assert isinstance(pipes[0](image)[0]["generated_text"], str)
    _assert_nothing_ran(marker)


def test_the_payloads_are_live(hostile_folder):
    """The .py files would write the marker when run: the tests above would see an import."""
    import subprocess

    folder, marker = hostile_folder
    subprocess.run([sys.executable, str(folder / "modeling_evil.py")], check=False)
    assert marker.read_text() == "modeling_evil"


def test_a_config_without_remote_code_gives_no_warning(small_models):
    import blip_torch

    folder = small_models["BlipForConditionalGeneration"]
    assert _load_once(lambda: blip_torch.BlipForConditionalGeneration.from_pretrained(folder)) == []
    assert _load_once(lambda: AutoConfig.from_pretrained(folder)) == []


def test_the_remote_code_keys_are_kept_on_a_round_trip(hostile_folder, tmp_path):
    """Loading and saving does not drop `auto_map` (transformers keeps it too); it still runs nothing."""
    folder, marker = hostile_folder
    with pytest.warns(UserWarning, match="remote code"):
        config = BlipConfig.from_pretrained(folder)
    config.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["auto_map"]["AutoModel"] == "modeling_evil.EvilModel"
    _assert_nothing_ran(marker)
