"""`blip` commands keep TensorFlow's C++ log lines off stderr unless --verbose; the library never touches logging.

Run as users run them: subprocesses, with TF_CPP_MIN_LOG_LEVEL unset (the test session sets it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import PIL.Image
import pytest

from blip_core.io.native_logs import _Filter, is_native_log_line
from tests.helpers.images import base_rgb

ENV = {key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV, timeout=600)


def native_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if is_native_log_line(line.encode())]


@pytest.fixture(scope="module")
def tensorflow_own_lines() -> list[str]:
    """What TensorFlow itself prints on import and a first op here (the reference: may be empty elsewhere)."""
    out = run("-c", "import tensorflow as tf; tf.reduce_sum(tf.ones((2, 2)))")
    assert out.returncode == 0, out.stderr
    return native_lines(out.stderr)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    PIL.Image.fromarray(base_rgb(50, 60, seed=3)).save(path)
    return path


def test_the_reference_run_does_print_native_lines(tensorflow_own_lines):
    # on x86 Linux TensorFlow 2.21 announces oneDNN: without such lines the tests below would prove nothing
    assert any("oneDNN" in line or "cpu_feature_guard" in line for line in tensorflow_own_lines)


def test_caption_in_tensorflow_is_quiet_and_verbose_lets_the_lines_through(small_models, photo, tensorflow_own_lines):
    args = ["-m", "blip_core.cli", "caption", str(photo), "--framework", "tf", "--max-new-tokens", "3"]
    args += ["--model", str(small_models["BlipForConditionalGeneration"])]
    quiet, verbose = run(*args), run(*args, "--verbose")
    assert quiet.returncode == verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert quiet.stderr == "" and quiet.stdout == verbose.stdout and quiet.stdout.startswith(str(photo))
    shown = {line.split("] ", 1)[-1] for line in native_lines(verbose.stderr)}
    assert {line.split("] ", 1)[-1] for line in tensorflow_own_lines} <= shown


@pytest.mark.slow  # the same filter as the caption test below, around a longer command
def test_demo_is_quiet(tmp_path):
    out = run("-m", "blip_core.cli", "demo", "--count", "1", "--start", "5")
    assert out.returncode == 0, out.stderr
    assert native_lines(out.stderr) == [] and "E0000" not in out.stderr and "I0000" not in out.stderr
    assert "same ids in both frameworks: True" in out.stdout


def test_importing_and_using_the_library_leaves_logging_and_environment_alone(small_models):
    model = str(small_models["BlipForConditionalGeneration"])
    script = textwrap.dedent(
        f"""
        import json, logging, os, warnings
        import numpy, torch, tensorflow, keras, absl.logging
        def state():
            loggers = {{name: [logging.getLogger(name).level, len(logging.getLogger(name).handlers)]
                       for name in ("tensorflow", "absl", "keras", "", "blip_core", "blip_tf", "blip_torch")}}
            return {{"env": dict(os.environ), "loggers": loggers, "absl": absl.logging.get_verbosity(),
                    "warning_filters": len(warnings.filters)}}
        states = [state()]
        import blip_core, blip_torch, blip_tf
        states.append(state())
        blip_tf.pipeline("image-to-text", model={model!r})(numpy.zeros((32, 32, 3), "uint8"), max_new_tokens=2)
        states.append(state())
        blip_torch.pipeline("image-to-text", model={model!r})(numpy.zeros((32, 32, 3), "uint8"), max_new_tokens=2)
        states.append(state())
        print(json.dumps(states))
        """
    )
    out = run("-c", script)
    assert out.returncode == 0, out.stderr
    before, imported, used_tf, used_torch = json.loads(out.stdout.splitlines()[-1])
    assert imported == before and used_tf == before
    # torch sets TORCHINDUCTOR_CACHE_DIR (and a sympy warning filter) itself when a module is built
    # on the meta device, as from_pretrained does, or when a test of this process compiled or exported a model
    # (the child then inherits it): torch's doing, not this library's
    def torch_own(env: dict) -> dict:
        return {key: value for key, value in env.items() if not key.startswith("TORCHINDUCTOR_")}

    assert torch_own(used_torch["env"]) == torch_own(before["env"]) and used_torch["loggers"] == before["loggers"]
    assert used_torch["absl"] == before["absl"]


def _filtered(chunks: list[bytes]) -> bytes:
    """What the filter writes for `chunks` arriving as separate reads."""
    sink_read, sink_write = os.pipe()
    pump = _Filter(-1, sink_write)
    for chunk in chunks:
        pump.feed(chunk)
    pump.finish()
    os.close(sink_write)
    with os.fdopen(sink_read, "rb") as sink:
        return sink.read()


def test_the_filter_drops_only_native_lines_and_keeps_partial_output():
    native = (
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        b"I0000 00:00:1795973874.328172    6809 port.cc:153] oneDNN custom operations are on.\n"
        b"E0000 00:00:1795973874.4      6809 onednn.cc:12] oneDNN supports DT_HALF only on platforms with AVX-512\n"
        b"2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not find cuda\n"
        b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
        b"appropriate compiler flags.\n"
    )
    own = b"blip: skipped a.png: not an image\n\r[1/3]\r[2/3]\r[3/3]\nIn the end: done\nE is for error, not a log\n"
    assert _filtered([native + own]) == own
    split = [native[:30], native[30:200], native[200:] + own[:20], own[20:]]  # lines cut across reads
    assert _filtered(split) == own
    assert _filtered([b"I0000 00:00:17.5 1 a.cc:1] unfinished"]) == b""
    assert _filtered([b"Iceland, no newline"]) == b"Iceland, no newline"
