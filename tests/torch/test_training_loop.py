"""The PyTorch training loop helper on the training helpers' batches."""

from __future__ import annotations

import pytest
import torch

import blip_torch
from blip_core import BlipProcessor
from blip_core.demo.synthetic import samples
from blip_core.training import itm_examples, vqa_examples
from blip_torch.training import batch_loss, to_tensors, train


def data(count=8):
    pairs = samples(7, 0, count)
    return [image for image, _ in pairs], [scene for _, scene in pairs]


def test_train_lowers_the_vqa_loss_and_ends_in_eval_mode(small_models):
    folder = small_models["BlipForQuestionAnswering"]
    model = blip_torch.BlipForQuestionAnswering.from_pretrained(folder)
    images, scenes = data()
    examples = vqa_examples(
        BlipProcessor.from_pretrained(folder),
        images,
        [s.questions()[0][0] for s in scenes],
        [s.questions()[0][1] for s in scenes],
    )
    steps = []
    losses = train(model, [examples] * 8, learning_rate=3e-3, on_step=lambda step, loss: steps.append(step))
    assert steps == list(range(8)) and len(losses) == 8
    assert losses[-1] < losses[0] * 0.9, losses
    assert not model.training
    with torch.no_grad():
        assert float(batch_loss(model, to_tensors(examples, model))) < losses[0] * 0.9


def test_itm_loss_does_not_depend_on_where_the_matched_pairs_sit(small_models):
    folder = small_models["BlipForImageTextRetrieval"]
    model = blip_torch.BlipForImageTextRetrieval.from_pretrained(folder)
    images, scenes = data(4)
    batch = to_tensors(
        itm_examples(BlipProcessor.from_pretrained(folder), images, [s.caption for s in scenes], seed=1), model
    )
    order = torch.tensor([4, 0, 5, 1, 6, 2, 7, 3])
    with torch.no_grad():
        in_order = float(batch_loss(model, batch))
        shuffled = float(batch_loss(model, {key: value[order] for key, value in batch.items()}))
    assert shuffled == pytest.approx(in_order, abs=1e-5)
