"""XLA programs cached across processes (`BLIP_XLA_CACHE`, blip_tf/_xla_cache.py): where, when, and that a
second process loads the first one's program and generates the same ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from blip_tf._xla_cache import FLAG, cache_folder, enable

SCRIPT = r"""
import json, sys
import numpy as np
import blip_tf
model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(sys.argv[1])
pixels = np.random.RandomState(0).rand(1, 3, 80, 80).astype("float32")
print(json.dumps(model.generate(pixel_values=pixels, max_new_tokens=5).numpy().tolist()))
"""


def test_off_unless_asked() -> None:
    assert cache_folder({}) is None
    for off in ("0", "off", "", "no"):
        assert cache_folder({"BLIP_XLA_CACHE": off}) is None


def test_default_folder_is_per_tensorflow_version_and_cpu(tmp_path) -> None:
    folder = cache_folder({"BLIP_XLA_CACHE": "1", "XDG_CACHE_HOME": str(tmp_path)})
    assert folder.parent == tmp_path / "blip-dual" / "xla"
    assert folder.name.startswith("tf-2.") and len(folder.name.rsplit("-", 1)[1]) == 12


def test_enable_adds_the_flag_once_and_respects_a_user_flag(tmp_path) -> None:
    environ = {"BLIP_XLA_CACHE": str(tmp_path / "xla"), "TF_XLA_FLAGS": "--tf_xla_auto_jit=0"}
    assert enable(environ) == tmp_path / "xla" and (tmp_path / "xla").is_dir()
    assert environ["TF_XLA_FLAGS"] == f"--tf_xla_auto_jit=0 {FLAG}={tmp_path / 'xla'}"
    assert enable(environ) is None and environ["TF_XLA_FLAGS"].count(FLAG) == 1
    assert enable({"BLIP_XLA_CACHE": "off"}) is None


def test_unwritable_folder_compiles_as_usual(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    environ = {"BLIP_XLA_CACHE": str(blocker / "xla")}
    assert enable(environ) is None and "TF_XLA_FLAGS" not in environ


def test_second_process_loads_the_program_and_gives_the_same_ids(tmp_path) -> None:
    model = os.path.join(os.path.dirname(__file__), "..", "..", "blip_core", "data", "models")
    model = os.path.abspath(os.path.join(model, "BlipForConditionalGeneration"))
    env = {**os.environ, "BLIP_XLA_CACHE": str(tmp_path / "xla"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_XLA_FLAGS", None)
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", SCRIPT, model], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        entries = sorted(os.listdir(tmp_path / "xla"))
        assert entries and all(name.startswith("xla_compile_cache") for name in entries)
        if len(runs) == 1:
            first_entries = entries
    assert entries == first_entries  # the second process compiled nothing new: it loaded the programs
    assert runs[0] == runs[1]
