"""Cross-framework round trips: what either framework saves, the other loads and reproduces exactly."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch

import blip_tf
import blip_torch
from blip_core.checkpoints.safetensors_io import SafetensorsFile
from blip_core.weights.names import MODEL_CLASSES
from tests.helpers.compare import flatten
from tests.helpers.golden import FIXTURES, load_npz

GOLDEN = load_npz("models.npz")
PIXELS, IDS = GOLDEN["input::pixel_values"], GOLDEN["input::input_ids_full"]


def caption_logits(model, framework):
    if framework == "torch":
        with torch.no_grad():
            return model(pixel_values=torch.from_numpy(PIXELS), input_ids=torch.from_numpy(IDS)).logits.numpy()
    return model(pixel_values=tf.constant(PIXELS), input_ids=tf.constant(IDS)).logits.numpy()


@pytest.mark.parametrize("class_name", MODEL_CLASSES)
def test_torch_save_tf_load_tf_save_torch_load(tiny_checkpoints, tmp_path, class_name):
    source = getattr(blip_torch, class_name).from_pretrained(tiny_checkpoints[class_name])
    source.save_pretrained(tmp_path / "from_torch")
    tf_model = getattr(blip_tf, "TF" + class_name).from_pretrained(tmp_path / "from_torch")
    tf_model.save_pretrained(tmp_path / "from_tf")
    a, b = (
        SafetensorsFile(tmp_path / "from_torch" / "model.safetensors"),
        SafetensorsFile(tmp_path / "from_tf" / "model.safetensors"),
    )
    assert a.keys() == b.keys() or sorted(a.keys()) == sorted(b.keys())
    for name in a.keys():
        assert np.array_equal(a.get(name), b.get(name)), name
    back = getattr(blip_torch, class_name).from_pretrained(tmp_path / "from_tf")
    assert all(torch.equal(p, q) for p, q in zip(source.state_dict().values(), back.state_dict().values(), strict=True))


def test_untied_decoder_survives_both_frameworks(tmp_path):
    """The TF port's h5 holds its own decoder: both trees keep it, save it, and agree on the logits."""
    folder = FIXTURES / "hf_checkpoints" / "caption_tf"
    torch_model = blip_torch.BlipForConditionalGeneration.from_pretrained(folder)
    tf_model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(folder)
    assert tf_model.untied_names() == torch_model.untied_names() == {"text_decoder.cls.predictions.decoder.weight"}
    tf_model.save_pretrained(tmp_path)
    again = blip_torch.BlipForConditionalGeneration.from_pretrained(tmp_path)
    logits = caption_logits(torch_model, "torch")
    assert np.abs(caption_logits(tf_model, "tf") - logits).max() < 1e-4
    assert np.array_equal(caption_logits(again, "torch"), logits)


def test_tf_loads_every_format_without_torch(tmp_path):
    """A subprocess that blocks `import torch` loads .bin, .safetensors and .h5 into blip_tf."""
    import subprocess
    import sys

    code = f"""
import sys
sys.modules["torch"] = None  # any import of torch now fails
import numpy as np, blip_tf
root = {str(FIXTURES / "hf_checkpoints")!r}
outs = [blip_tf.TFBlipForConditionalGeneration.from_pretrained(root + "/" + name)(
            pixel_values=np.zeros((1, 3, 40, 40), np.float32), input_ids=np.array([[97, 5, 6]])).logits.numpy()
        for name in ("caption_safetensors", "caption_bin")]
assert np.abs(outs[0] - outs[1]).max() == 0
blip_tf.TFBlipForConditionalGeneration.from_pretrained(root + "/caption_tf")
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_flatten_helper_sees_nested_outputs(tiny_checkpoints):
    model = blip_tf.TFBlipModel.from_pretrained(tiny_checkpoints["BlipModel"])
    out = model(input_ids=tf.constant(IDS), pixel_values=tf.constant(PIXELS), output_hidden_states=True)
    paths = flatten(out)
    assert "text_model_output.last_hidden_state" in paths and "vision_model_output.hidden_states[2]" in paths
