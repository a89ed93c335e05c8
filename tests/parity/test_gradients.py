"""Training parity: the captioning and VQA losses and their gradients agree across frameworks."""

from __future__ import annotations

import pytest
import tensorflow as tf
import torch

import blip_tf
import blip_torch
from blip_core.weights import expected_params, to_keras
from tests.helpers.compare import assert_outputs_close
from tests.helpers.golden import load_npz

GOLDEN = load_npz("models.npz")


def batch(class_name):
    if class_name == "BlipForConditionalGeneration":
        return {
            "pixel_values": GOLDEN["input::pixel_values"],
            "input_ids": GOLDEN["input::input_ids"],
            "attention_mask": GOLDEN["input::attention_mask"],
            "labels": GOLDEN["input::labels"],
        }
    labels = GOLDEN["input::answers"].copy()
    labels[1, 3:] = -100
    return {
        "input_ids": GOLDEN["input::input_ids"],
        "attention_mask": GOLDEN["input::attention_mask"],
        "pixel_values": GOLDEN["input::pixel_values"],
        "labels": labels,
    }


@pytest.mark.parametrize("class_name", ["BlipForConditionalGeneration", "BlipForQuestionAnswering"])
def test_loss_gradients_match(tiny_checkpoints, class_name):
    folder = tiny_checkpoints[class_name]
    inputs = batch(class_name)
    torch_model = getattr(blip_torch, class_name).from_pretrained(folder).train()
    loss_pt = torch_model(**{k: torch.from_numpy(v.copy()) for k, v in inputs.items()}).loss
    loss_pt.backward()
    tf_model = getattr(blip_tf, "TF" + class_name).from_pretrained(folder)
    with tf.GradientTape() as tape:
        loss_tf = tf_model(**{k: tf.constant(v) for k, v in inputs.items()}, training=True).loss
    specs = [s for s in expected_params(class_name, tf_model.config) if s.name in dict(torch_model.named_parameters())]
    variables = [tf_model.variable(s.name, s.kind) for s in specs]
    grads_tf = tape.gradient(loss_tf, variables)
    assert loss_tf.shape == () and abs(float(loss_tf) - float(loss_pt.detach())) < 1e-4
    params = dict(torch_model.named_parameters())
    expected, actual = {}, {}
    for spec, grad in zip(specs, grads_tf, strict=True):
        torch_grad = params[spec.name].grad
        assert torch_grad is not None and grad is not None, spec.name
        expected[spec.name] = to_keras(torch_grad.numpy(), spec.kind, spec.leaf)
        actual[spec.name] = tf.convert_to_tensor(grad).numpy()
    assert len(expected) >= 80
    assert_outputs_close(actual, expected)
