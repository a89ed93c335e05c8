"""Labels hold one target per token: a labels tensor whose shape is not the ids' gets the same clear ValueError in
both trees (`blip_core.modeling.limits.check_label_shape`), before any loss kernel. `transformers` lets PyTorch's
cross-entropy fail ("Expected input batch_size (12) to match target batch_size (4)") or, when only the length
differs by chance of the shift, trains on misaligned targets; a well-shaped pair gives the same loss in both."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch

import blip_tf
import blip_torch
from tests.helpers.golden import load_npz

GOLDEN = load_npz("models.npz")
PIXELS = GOLDEN["input::pixel_values"]
IDS = GOLDEN["input::input_ids"]
LABELS = GOLDEN["input::labels"]


def both(tiny_checkpoints, class_name):
    folder = tiny_checkpoints[class_name]
    return getattr(blip_torch, class_name).from_pretrained(folder), getattr(blip_tf, "TF" + class_name).from_pretrained(
        folder
    )


def errors(tiny_checkpoints, class_name, arrays):
    torch_model, tf_model = both(tiny_checkpoints, class_name)
    messages = []
    with pytest.raises(ValueError) as raised, torch.no_grad():
        torch_model(**{key: torch.from_numpy(value) for key, value in arrays.items()})
    messages.append(str(raised.value))
    with pytest.raises(ValueError) as raised:
        tf_model(
            **{
                key: tf.constant(value.astype(np.int32) if value.dtype == np.int64 else value)
                for key, value in arrays.items()
            }
        )
    messages.append(str(raised.value))
    return messages


@pytest.mark.parametrize(
    ("labels", "shape"),
    [
        (LABELS[:, :4], "(2, 4)"),
        (LABELS[:1], "(1, 7)"),
        (np.concatenate([LABELS, LABELS], 1), "(2, 14)"),
        (LABELS[0], "(7,)"),
    ],
)
def test_captioning_labels_of_another_shape_are_a_clear_error(tiny_checkpoints, labels, shape):
    arrays = {"pixel_values": PIXELS, "input_ids": IDS, "labels": np.ascontiguousarray(labels)}
    torch_message, tf_message = errors(tiny_checkpoints, "BlipForConditionalGeneration", arrays)
    assert torch_message == tf_message
    assert tf_message.startswith("labels must have the shape of input_ids (2, 7) (one target per token")
    assert tf_message.endswith(f"got {shape}")


def test_question_answering_labels_must_match_the_decoder_inputs(tiny_checkpoints):
    answers = GOLDEN["input::answers"]
    arrays = {
        "pixel_values": PIXELS,
        "input_ids": GOLDEN["input::input_ids_full"],
        "decoder_input_ids": answers,
        "labels": answers[:, :3].copy(),
    }
    torch_message, tf_message = errors(tiny_checkpoints, "BlipForQuestionAnswering", arrays)
    assert (
        torch_message
        == tf_message
        == (
            "labels must have the shape of input_ids (2, 5) (one target per token, -100 where no loss is wanted), "
            "got (2, 3)"
        )
    )


def test_well_shaped_labels_give_the_same_loss_in_both_trees(tiny_checkpoints):
    torch_model, tf_model = both(tiny_checkpoints, "BlipForConditionalGeneration")
    with torch.no_grad():
        expected = torch_model(
            pixel_values=torch.from_numpy(PIXELS), input_ids=torch.from_numpy(IDS), labels=torch.from_numpy(LABELS)
        ).loss
    found = tf_model(pixel_values=PIXELS, input_ids=IDS.astype(np.int32), labels=LABELS.astype(np.int32)).loss
    assert float(found) == pytest.approx(float(expected), abs=1e-4)
