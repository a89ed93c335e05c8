"""Keras-native training: compile + fit on a tf.data pipeline of processor outputs trains on the model's loss."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import blip_tf
from tests.helpers.golden import load_npz

GOLDEN = load_npz("models.npz")


def dataset(class_name: str) -> tf.data.Dataset:
    pixels = np.repeat(GOLDEN["input::pixel_values"], 2, axis=0)
    if class_name == "BlipForConditionalGeneration":
        ids, mask, labels = (
            np.repeat(GOLDEN[f"input::{k}"], 2, axis=0) for k in ("input_ids", "attention_mask", "labels")
        )
        batch = {
            "pixel_values": pixels,
            "input_ids": ids.astype(np.int32),
            "attention_mask": mask.astype(np.int32),
            "labels": labels.astype(np.int32),
        }
    else:
        ids = np.repeat(GOLDEN["input::input_ids_full"], 2, axis=0).astype(np.int32)
        answers = np.repeat(GOLDEN["input::answers"], 2, axis=0).astype(np.int32)
        labels = answers.copy()
        labels[:, -1] = -100
        batch = {"pixel_values": pixels, "input_ids": ids, "labels": labels}
    return tf.data.Dataset.from_tensor_slices(batch).batch(2)


@pytest.mark.parametrize(
    "class_name",
    # VQA's loss and gradients are compared with PyTorch's in tests/parity; its fit is the longest: --run-slow
    ["BlipForConditionalGeneration", pytest.param("BlipForQuestionAnswering", marks=pytest.mark.slow)],
)
def test_fit_lowers_the_models_own_loss(tiny_checkpoints, class_name):
    model = getattr(blip_tf, "TF" + class_name).from_pretrained(tiny_checkpoints[class_name])
    data = dataset(class_name)
    before = float(model(next(iter(data))).loss)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(data, epochs=6, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 6 and all(np.isfinite(losses))
    after = float(model(next(iter(data))).loss)
    assert after < before * 0.8, (before, after)


def test_loss_is_a_scalar(tiny_checkpoints):
    model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(tiny_checkpoints["BlipForConditionalGeneration"])
    out = model(next(iter(dataset("BlipForConditionalGeneration"))))
    assert out.loss.shape == ()


def test_fit_without_labels_is_a_clear_error(tiny_checkpoints):
    model = blip_tf.TFBlipForImageTextRetrieval.from_pretrained(tiny_checkpoints["BlipForImageTextRetrieval"])
    data = tf.data.Dataset.from_tensor_slices(
        {"pixel_values": GOLDEN["input::pixel_values"], "input_ids": GOLDEN["input::input_ids"].astype(np.int32)}
    ).batch(2)
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"needs the 0/1 match label of each image-text pair, as y"):
        model.fit(data, epochs=1, verbose=0)


def test_fit_of_a_captioner_without_labels_names_them(tiny_checkpoints):
    model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(tiny_checkpoints["BlipForConditionalGeneration"])
    model.compile(optimizer="adam")
    batch = {"pixel_values": GOLDEN["input::pixel_values"], "input_ids": GOLDEN["input::input_ids"].astype(np.int32)}
    with pytest.raises(ValueError, match=r"the batch has no labels, so the model computes no loss"):
        model.fit(batch, epochs=1, verbose=0)


@pytest.mark.parametrize("skip_bytes", [0, 4, 16])
def test_adopted_checkpoint_memory_is_safe_at_any_alignment(skip_bytes):
    """TF aborts the process on misaligned tensor memory; the loader adopts only aligned arrays, copies others."""
    from blip_core.checkpoints.safetensors_io import aligned_empty
    from blip_tf.modeling_utils import _shared_tensor

    raw = aligned_empty(4 * 64 + 64)[skip_bytes : skip_bytes + 4 * 64].view(np.float32).reshape(8, 8)
    raw[:] = np.arange(64, dtype=np.float32).reshape(8, 8)
    tensor = _shared_tensor(raw)
    total = tf.matmul(tensor + 1.0, tensor)  # kernels that check alignment
    np.testing.assert_array_equal(total.numpy(), (raw + 1.0) @ raw)
