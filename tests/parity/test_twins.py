"""Twin tests: blip_torch and blip_tf from one checkpoint, same inputs, every output compared."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import tensorflow as tf
import torch

import blip_tf
import blip_torch
from blip_core.weights.names import MODEL_CLASSES
from tests.helpers.checkpoints import write_generation_checkpoint
from tests.helpers.compare import assert_outputs_close, flatten
from tests.helpers.golden import load_npz
from tests.parity.registry import TWINS, layer_inputs

INPUTS = layer_inputs({k.split("::", 1)[1]: v for k, v in load_npz("models.npz").items() if k.startswith("input::")})
_LOADED: dict[tuple, tuple] = {}


@pytest.fixture
def twins(tiny_checkpoints, tmp_path_factory):
    def load(class_name: str, variant: str = "plain"):
        key = (class_name, variant)
        if key not in _LOADED:
            folder = tiny_checkpoints[class_name]
            if variant != "plain":
                folder = write_generation_checkpoint(class_name, variant, tmp_path_factory.mktemp(variant))
            _LOADED[key] = (
                getattr(blip_torch, class_name).from_pretrained(folder),
                getattr(blip_tf, "TF" + class_name).from_pretrained(folder),
            )
        return _LOADED[key]

    return load


def run(model, framework: str, twin) -> object:
    arrays = {arg: INPUTS[key] for arg, key in twin.inputs.items()}
    if framework == "torch":
        arguments = {arg: torch.from_numpy(value.copy()) for arg, value in arrays.items()}
        target = twin.layer(model, framework) if twin.layer else model
        call = target if twin.method in ("forward", "layer") else getattr(target, twin.method)
        with torch.no_grad():
            return call(**arguments, **twin.kwargs)
    arguments = {arg: tf.constant(value) for arg, value in arrays.items()}
    target = twin.layer(model, framework) if twin.layer else model
    call = target if twin.method in ("forward", "layer") else getattr(target, twin.method)
    return call(**arguments, **twin.kwargs)


def as_dict(value) -> dict:
    return value if isinstance(value, dict) else {"": value}


@pytest.mark.parametrize("twin", [t for t in TWINS if t.method != "generate"], ids=lambda t: t.name)
def test_twin_outputs_match(twins, twin):
    torch_model, tf_model = twins(twin.class_name, twin.variant)
    expected, actual = flatten(as_dict(run(torch_model, "torch", twin))), flatten(as_dict(run(tf_model, "tf", twin)))
    assert expected, "nothing to compare"
    assert set(actual) == set(expected), f"outputs differ: {set(actual) ^ set(expected)}"
    assert_outputs_close(actual, expected)


def logit_margin(torch_model, twin, ids: np.ndarray) -> float:
    """The smallest top-1/top-2 logit gap along the generated ids: near-ties explain a divergence."""
    inputs = {arg: torch.from_numpy(INPUTS[key].copy()) for arg, key in twin.inputs.items()}
    if twin.class_name != "BlipForConditionalGeneration" or "input_ids" in inputs:
        return float("nan")
    with torch.no_grad():
        logits = torch_model(pixel_values=inputs["pixel_values"], input_ids=torch.from_numpy(ids)).logits
    top = logits.topk(2, dim=-1).values
    return float((top[..., 0] - top[..., 1]).min())


@pytest.mark.parametrize("twin", [t for t in TWINS if t.method == "generate"], ids=lambda t: t.name)
def test_twin_generate_ids_equal(twins, twin):
    torch_model, tf_model = twins(twin.class_name, twin.variant)
    ids_pt = run(torch_model, "torch", twin).numpy()
    ids_tf = run(tf_model, "tf", twin).numpy()
    if ids_pt.shape != ids_tf.shape or not np.array_equal(ids_pt, ids_tf):
        margin = logit_margin(torch_model, twin, ids_pt)
        pytest.fail(f"ids differ (smallest top-1/top-2 logit margin {margin:.3g}):\ntorch\n{ids_pt}\ntf\n{ids_tf}")


def test_padded_batch_ids_equal_across_frameworks(twins):
    torch_model, tf_model = twins("BlipForConditionalGeneration", "varied")
    pixels = np.concatenate([INPUTS["pixel_values"], INPUTS["pixel_values_1"]])
    ids = np.array([[97, 11, 23, 40, 3], [97, 40, 3, 0, 0], [97, 7, 8, 3, 0]], np.int64)
    mask = (np.arange(5)[None] < np.array([[5], [3], [4]])).astype(np.int64)
    for kwargs in ({"max_new_tokens": 9}, {"num_beams": 3, "max_new_tokens": 7}):
        a = torch_model.generate(
            torch.from_numpy(pixels), input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), **kwargs
        )
        b = tf_model.generate(pixels, input_ids=ids.astype(np.int32), attention_mask=mask, **kwargs)
        assert np.array_equal(a.numpy(), b.numpy()), kwargs


def test_every_public_class_and_method_has_a_twin_entry():
    covered = {(twin.class_name, twin.method) for twin in TWINS}
    for class_name in MODEL_CLASSES:
        cls = getattr(blip_torch, class_name)
        public = {"forward"} | {
            name
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
            and name in cls.__dict__
            and name not in ("tie_weights", "untied_names", "post_init")
            and not name.startswith(("get_input", "get_output", "set_input"))
        }
        missing = sorted(method for method in public if (class_name, method) not in covered)
        assert not missing, f"{class_name}: no twin entry for {missing}"
        assert hasattr(blip_tf, "TF" + class_name)
        for method in public - {"forward"}:
            assert hasattr(getattr(blip_tf, "TF" + class_name), method), f"TF{class_name} lacks {method}"
