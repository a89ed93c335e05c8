"""SavedModel export: a serving signature that reloads in a fresh process and gives generate's ids."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import blip_tf
from tests.helpers.checkpoints import write_generation_checkpoint
from tests.helpers.golden import load_npz

GOLDEN = load_npz("models.npz")

RELOAD = """
import sys, numpy as np, tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
inputs = dict(np.load(sys.argv[2]))
print(repr(serve(**{k: tf.constant(v) for k, v in inputs.items()})["sequences"].numpy().tolist()))
"""


@pytest.mark.parametrize(
    "class_name,kwargs",
    [("BlipForConditionalGeneration", {"num_beams": 3}), ("BlipForQuestionAnswering", {"num_beams": 1})],
)
def test_saved_model_reloads_with_the_same_ids(tmp_path, class_name, kwargs):
    model = getattr(blip_tf, "TF" + class_name).from_pretrained(
        write_generation_checkpoint(class_name, "eos", tmp_path / "ck")
    )
    pixels = GOLDEN["input::pixel_values"]
    inputs = {"pixel_values": pixels}
    if class_name == "BlipForConditionalGeneration":
        expected = model.generate(pixels, max_new_tokens=9, **kwargs).numpy()
    else:
        questions = GOLDEN["input::input_ids"].astype(np.int32)
        mask = GOLDEN["input::attention_mask"].astype(np.int32)
        expected = model.generate(questions, pixels, attention_mask=mask, max_new_tokens=9, **kwargs).numpy()
        inputs.update(input_ids=questions, attention_mask=mask)
    blip_tf.export_for_serving(model, str(tmp_path / "saved"), max_new_tokens=9, **kwargs)
    np.savez(tmp_path / "inputs.npz", **inputs)
    out = subprocess.run(
        [sys.executable, "-c", RELOAD, str(tmp_path / "saved"), str(tmp_path / "inputs.npz")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert eval(out.stdout.strip().splitlines()[-1]) == expected.tolist()
