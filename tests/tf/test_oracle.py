"""blip_tf against `transformers` 4.57.6 PyTorch BLIP directly (not only through its PyTorch twin)."""

from __future__ import annotations

import pytest
import tensorflow as tf

import blip_tf
from tests.helpers.compare import assert_outputs_close
from tests.helpers.golden import load_npz
from tests.helpers.model_cases import FORWARD_CASES

GOLDEN = load_npz("models.npz")
_MODELS: dict = {}


@pytest.mark.parametrize("case", FORWARD_CASES, ids=[case.name for case in FORWARD_CASES])
def test_forward_matches_transformers(tiny_checkpoints, case):
    if case.class_name not in _MODELS:
        _MODELS[case.class_name] = getattr(blip_tf, "TF" + case.class_name).from_pretrained(
            tiny_checkpoints[case.class_name]
        )
    model = _MODELS[case.class_name]
    inputs = {arg: tf.constant(GOLDEN[f"input::{key}"]) for arg, key in case.inputs.items()}
    call = model if case.method == "forward" else getattr(model, case.method)
    out = call(**inputs, **case.kwargs)
    expected = {k.split("::", 1)[1]: v for k, v in GOLDEN.items() if k.startswith(f"{case.name}::")}
    assert_outputs_close(out if isinstance(out, dict) else {"": out}, expected)
