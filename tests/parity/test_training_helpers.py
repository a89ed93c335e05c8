"""The training helpers' batches give the same loss and gradients in both frameworks.

Captioning (BOS substitution, prompt masked), VQA (answers as decoder inputs, -100 padding) and
ITM (matched and shuffled pairs, ITM + ITC loss), each built through the processor from real
photos and run through `blip_torch.training.batch_loss` and `blip_tf.training.batch_loss`.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch

import blip_tf
import blip_tf.training
import blip_torch
import blip_torch.training
from blip_core import BlipProcessor
from blip_core.training import caption_examples, itm_examples, vqa_examples
from blip_core.weights import expected_params, to_keras
from tests.helpers.compare import assert_outputs_close
from tests.helpers.images import photo

CAPTIONS = ["a cat sitting on a table", "an astronaut in a white suit", "a cup of coffee on a saucer"]


def photos() -> list[np.ndarray]:
    return [photo(name) for name in ("chelsea", "astronaut", "coffee")]


def examples(task: str, processor: BlipProcessor) -> dict[str, np.ndarray]:
    images = photos()
    if task == "caption":
        return caption_examples(processor, images, CAPTIONS, prompt="a picture of")
    if task == "vqa":
        return vqa_examples(
            processor, images, ["what animal is it?", "who is this?", "what drink?"], ["a cat", "astronaut", "coffee"]
        )
    return itm_examples(processor, images, CAPTIONS, seed=3)


CLASSES = {
    "caption": "BlipForConditionalGeneration",
    "vqa": "BlipForQuestionAnswering",
    "itm": "BlipForImageTextRetrieval",
}


@pytest.mark.parametrize("task", sorted(CLASSES))
def test_helper_batches_give_equal_losses_and_gradients(small_models, task):
    class_name = CLASSES[task]
    folder = small_models[class_name]
    batch = examples(task, BlipProcessor.from_pretrained(folder))
    torch_model = getattr(blip_torch, class_name).from_pretrained(folder).train()
    loss_pt = blip_torch.training.batch_loss(torch_model, blip_torch.training.to_tensors(batch, torch_model))
    loss_pt.backward()
    tf_model = getattr(blip_tf, "TF" + class_name).from_pretrained(folder)
    params = dict(torch_model.named_parameters())
    specs = [
        s for s in expected_params(class_name, tf_model.config) if s.name in params and params[s.name].grad is not None
    ]
    variables = [tf_model.variable(s.name, s.kind) for s in specs]
    with tf.GradientTape() as tape:
        loss_tf = blip_tf.training.batch_loss(tf_model, blip_tf.training.to_tensors(batch, tf_model))
    grads_tf = tape.gradient(loss_tf, variables)
    assert loss_tf.shape == () and loss_pt.shape == ()
    assert abs(float(loss_tf) - float(loss_pt.detach())) < 1e-4 * max(1.0, abs(float(loss_pt.detach())))
    expected = {s.name: to_keras(params[s.name].grad.numpy(), s.kind, s.leaf) for s in specs}
    actual = {}
    for spec, grad in zip(specs, grads_tf, strict=True):
        assert grad is not None, f"TensorFlow has no gradient for {spec.name}"
        actual[spec.name] = tf.convert_to_tensor(grad).numpy()
    assert len(expected) >= 40
    assert_outputs_close(actual, expected)


def test_prompt_tokens_are_outside_the_loss(small_models):
    processor = BlipProcessor.from_pretrained(small_models["BlipForConditionalGeneration"])
    masked = caption_examples(processor, photos(), CAPTIONS, prompt="a picture of")
    kept = caption_examples(processor, photos(), CAPTIONS, prompt="a picture of", mask_prompt=False)
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(small_models["BlipForConditionalGeneration"])
    with torch.no_grad():
        loss_masked = blip_torch.training.batch_loss(model, blip_torch.training.to_tensors(masked, model))
        loss_kept = blip_torch.training.batch_loss(model, blip_torch.training.to_tensors(kept, model))
    assert float(loss_masked) != pytest.approx(float(loss_kept), rel=1e-3)
