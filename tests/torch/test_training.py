"""blip_torch training behaviour: losses with -100, gradient checkpointing, dropout, input errors."""

from __future__ import annotations

import pytest
import torch

import blip_torch
from tests.helpers.golden import load_npz
from tests.helpers.tiny import config_for

GOLDEN = load_npz("models.npz")
PIXELS = torch.from_numpy(GOLDEN["input::pixel_values"])
IDS = torch.from_numpy(GOLDEN["input::input_ids"])
MASK = torch.from_numpy(GOLDEN["input::attention_mask"])
LABELS = torch.from_numpy(GOLDEN["input::labels"])
ANSWERS = torch.from_numpy(GOLDEN["input::answers"])


def load(tiny_checkpoints, name, **kwargs):
    return getattr(blip_torch, name).from_pretrained(tiny_checkpoints[name], **kwargs)


def manual_lm_loss(logits, labels):
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
    )


def test_caption_loss_ignores_minus_100(tiny_checkpoints):
    model = load(tiny_checkpoints, "BlipForConditionalGeneration")
    out = model(pixel_values=PIXELS, input_ids=IDS, attention_mask=MASK, labels=LABELS)
    assert out.loss.shape == () and torch.allclose(out.loss, manual_lm_loss(out.logits, LABELS), atol=1e-6)
    unmasked = model(pixel_values=PIXELS, input_ids=IDS, attention_mask=MASK, labels=IDS).loss
    assert not torch.allclose(out.loss, unmasked)


def test_vqa_labels_with_minus_100(tiny_checkpoints):
    model = load(tiny_checkpoints, "BlipForQuestionAnswering")
    labels = ANSWERS.clone()
    labels[1, 3:] = -100
    question = torch.from_numpy(GOLDEN["input::input_ids_full"])
    out = model(input_ids=question, pixel_values=PIXELS, labels=labels)
    decoder_inputs = ANSWERS.clone()
    decoder_inputs[1, 3:] = 0
    explicit = model(input_ids=question, pixel_values=PIXELS, decoder_input_ids=decoder_inputs, labels=labels)
    assert torch.isfinite(out.loss) and torch.allclose(out.loss, explicit.loss)
    assert out.logits.shape == (2, ANSWERS.shape[1], model.config.text_config.vocab_size)
    with pytest.raises(ValueError, match="pass decoder_input_ids"):
        model(input_ids=question, pixel_values=PIXELS)


def test_contrastive_loss(tiny_checkpoints):
    model = load(tiny_checkpoints, "BlipModel")
    out = model(input_ids=IDS, pixel_values=PIXELS, attention_mask=MASK, return_loss=True)
    targets = torch.arange(2)
    expected = (
        torch.nn.functional.cross_entropy(out.logits_per_text, targets)
        + torch.nn.functional.cross_entropy(out.logits_per_image, targets)
    ) / 2
    assert torch.allclose(out.loss, expected)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_checkpoints):
    results = []
    for checkpointing in (False, True):
        model = load(tiny_checkpoints, "BlipForConditionalGeneration").train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        loss = model(pixel_values=PIXELS, input_ids=IDS, attention_mask=MASK, labels=LABELS).loss
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.allclose(loss_a, loss_b) and grads_a.keys() == grads_b.keys() and len(grads_a) > 50
    assert all(torch.allclose(grads_a[k], grads_b[k], atol=1e-6) for k in grads_a)


def test_dropout_only_in_train_mode(tiny_checkpoints):
    config = config_for("BlipForConditionalGeneration")
    config.text_config.hidden_dropout_prob = 0.3
    config.text_config.attention_probs_dropout_prob = 0.3
    config.vision_config.attention_dropout = 0.3
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(
        tiny_checkpoints["BlipForConditionalGeneration"], config=config
    )
    with torch.no_grad():
        first, second = (model(pixel_values=PIXELS, input_ids=IDS).logits for _ in range(2))
        assert torch.equal(first, second)
        model.train()
        third = model(pixel_values=PIXELS, input_ids=IDS).logits
    assert not torch.allclose(first, third)


@pytest.mark.parametrize(
    "name,kwargs,error,message",
    [
        (
            "BlipVisionModel",
            {"pixel_values": torch.zeros(1, 4, 40, 40)},
            ValueError,
            "shape \\(batch, 3, height, width\\)",
        ),
        ("BlipVisionModel", {"pixel_values": torch.zeros(1, 3, 48, 48)}, ValueError, "interpolate_pos_encoding=True"),
        ("BlipTextModel", {"input_ids": torch.tensor([[1, 500]])}, ValueError, "must lie in \\[0, 99\\)"),
        ("BlipTextModel", {"input_ids": torch.tensor([[1.0, 2.0]])}, TypeError, "must be integers"),
        (
            "BlipTextModel",
            {"input_ids": torch.ones(1, 60, dtype=torch.long)},
            ValueError,
            "exceeds max_position_embeddings",
        ),
        (
            "BlipForImageTextRetrieval",
            {"input_ids": IDS[:1].repeat(3, 1), "pixel_values": PIXELS},
            ValueError,
            "2 images and 3 texts",
        ),
        ("BlipForConditionalGeneration", {"pixel_values": PIXELS}, ValueError, "needs input_ids"),
    ],
)
def test_bad_inputs_are_named(tiny_checkpoints, name, kwargs, error, message):
    with pytest.raises(error, match=message):
        load(tiny_checkpoints, name)(**kwargs)


def test_one_image_many_texts_for_itm(tiny_checkpoints):
    model = load(tiny_checkpoints, "BlipForImageTextRetrieval")
    with torch.no_grad():
        shared = model(input_ids=IDS, pixel_values=PIXELS[:1], attention_mask=MASK).itm_score
        paired = model(input_ids=IDS, pixel_values=PIXELS[:1].repeat(2, 1, 1, 1), attention_mask=MASK).itm_score
    assert torch.allclose(shared, paired, atol=1e-6)
