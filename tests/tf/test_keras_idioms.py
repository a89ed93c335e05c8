"""Keras idioms on the TF models, as programs written for `transformers`' TF BLIP use them: fit(x, y) and
(features, labels) datasets, predict, a BatchFeature as first argument, a failed fit followed by a good one,
our input errors reaching the caller unwrapped, model.save, models built when constructed."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import blip_tf
from blip_core.modeling.outputs import BlipForConditionalGenerationModelOutput, BlipImageTextMatchingModelOutput
from blip_core.processing.feature import BatchFeature
from blip_tf.training import itm_loss
from tests.helpers.golden import load_npz

GOLDEN = load_npz("models.npz")
PIXELS = GOLDEN["input::pixel_values"]
IDS = GOLDEN["input::input_ids"].astype(np.int32)
MASK = GOLDEN["input::attention_mask"].astype(np.int32)
LABELS = GOLDEN["input::labels"].astype(np.int32)
MATCH = np.array([1, 0], np.int32)


def captioner(tiny_checkpoints, optimizer=None):
    model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(tiny_checkpoints["BlipForConditionalGeneration"])
    model.compile(optimizer=optimizer or keras.optimizers.SGD(0.1))
    return model


def features() -> dict[str, np.ndarray]:
    return {"pixel_values": PIXELS, "input_ids": IDS, "attention_mask": MASK}


def weights_equal(first, second, atol: float = 1e-6) -> None:
    assert len(first.weights) == len(second.weights)
    for a, b in zip(first.weights, second.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=atol, err_msg=a.path)


def test_a_failed_fit_does_not_poison_the_next(tiny_checkpoints):
    """Adam's slots would be created inside the failed trace; the next fit reused Keras' broken step
    ("Creating variables on a non-first call"). After two failures it trains exactly like a fresh model."""
    # epsilon=1: Adam's slots, without dividing the rounding noise of gradients that are 0 (the key bias) by ~0
    adam = lambda: keras.optimizers.Adam(0.1, epsilon=1.0)  # noqa: E731
    tried, fresh = captioner(tiny_checkpoints, adam()), captioner(tiny_checkpoints, adam())
    with pytest.raises(
        ValueError, match=r"labels must have the shape of input_ids \((2|None), 7\).*got \((2|None), 3\)"
    ):
        tried.fit({**features(), "labels": LABELS[:, :3]}, epochs=1, verbose=0)
    with pytest.raises(TypeError, match="input_ids must be integers, got float32"):
        tried.fit({**features(), "input_ids": IDS.astype(np.float32), "labels": LABELS}, epochs=1, verbose=0)
    found = tried.fit(features(), LABELS, epochs=2, verbose=0).history["loss"]
    expected = fresh.fit(features(), LABELS, epochs=2, verbose=0).history["loss"]
    np.testing.assert_allclose(found, expected, rtol=1e-6)
    assert found[1] < found[0]
    weights_equal(tried, fresh, atol=1e-5)


def test_labels_given_as_y_train_as_labels_in_the_batch(tiny_checkpoints):
    as_y, in_batch, as_dataset = (captioner(tiny_checkpoints) for _ in range(3))
    expected = float(as_y(**features(), labels=LABELS).loss)
    assert as_y.evaluate(features(), LABELS, verbose=0) == pytest.approx(expected, rel=1e-5)
    as_y.fit(features(), LABELS, epochs=1, verbose=0)
    in_batch.fit({**features(), "labels": LABELS}, epochs=1, verbose=0)
    as_dataset.fit(tf.data.Dataset.from_tensor_slices((features(), LABELS)).batch(2), epochs=1, verbose=0)
    weights_equal(as_y, in_batch)
    weights_equal(as_y, as_dataset)
    trained = float(as_y(**features(), labels=LABELS).loss)
    assert trained < expected


def test_question_answering_takes_answers_as_y(tiny_checkpoints):
    model = blip_tf.TFBlipForQuestionAnswering.from_pretrained(tiny_checkpoints["BlipForQuestionAnswering"])
    model.compile(optimizer="sgd")
    question = GOLDEN["input::input_ids_full"].astype(np.int32)
    answers = GOLDEN["input::answers"].astype(np.int32)
    x = {"pixel_values": PIXELS, "input_ids": question}
    expected = float(model(**x, labels=answers).loss)
    assert model.evaluate(x, answers, verbose=0) == pytest.approx(expected, rel=1e-5)


def test_matching_takes_the_match_labels_as_y_or_in_the_batch(tiny_checkpoints):
    model = blip_tf.TFBlipForImageTextRetrieval.from_pretrained(tiny_checkpoints["BlipForImageTextRetrieval"])
    model.compile(optimizer="sgd")
    x = {"pixel_values": PIXELS, "input_ids": IDS, "attention_mask": MASK}
    expected = float(itm_loss(model, {**x, "match": tf.constant(MATCH)}, training=False))
    assert model.evaluate(x, MATCH, verbose=0) == pytest.approx(expected, rel=1e-5)
    assert model.evaluate({**x, "labels": MATCH}, verbose=0) == pytest.approx(expected, rel=1e-5)
    dataset = tf.data.Dataset.from_tensor_slices((x, MATCH)).batch(2)
    assert model.evaluate(dataset, verbose=0) == pytest.approx(expected, rel=1e-5)


def test_a_compiled_loss_is_applied_to_the_output_y_matches(tiny_checkpoints):
    """As `transformers`' TF train step: y against the first output that is not the loss (here itm_score)."""
    model = blip_tf.TFBlipForImageTextRetrieval.from_pretrained(tiny_checkpoints["BlipForImageTextRetrieval"])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = {"pixel_values": PIXELS, "input_ids": IDS, "attention_mask": MASK}
    scores = model(**x).itm_score.numpy().astype(np.float64)
    log_probs = scores - np.log(np.exp(scores).sum(-1, keepdims=True))
    expected = -log_probs[np.arange(2), MATCH].mean()
    assert model.evaluate(x, MATCH, verbose=0) == pytest.approx(expected, rel=1e-5)


def test_predict_returns_the_output_class_with_every_batch(tiny_checkpoints):
    model = captioner(tiny_checkpoints)
    eager = model(**features())
    for predicted in (model.predict(features(), batch_size=1, verbose=0), model.predict_on_batch(features())):
        assert isinstance(predicted, BlipForConditionalGenerationModelOutput)
        assert list(predicted.keys()) == list(eager.keys()) == ["logits", "image_embeds", "last_hidden_state"]
        for key in eager.keys():
            assert isinstance(predicted[key], np.ndarray) and predicted[key].shape[0] == 2
            np.testing.assert_allclose(predicted[key], eager[key].numpy(), atol=1e-5)
    retrieval = blip_tf.TFBlipForImageTextRetrieval.from_pretrained(tiny_checkpoints["BlipForImageTextRetrieval"])
    predicted = retrieval.predict(features(), verbose=0)
    assert isinstance(predicted, BlipImageTextMatchingModelOutput)
    np.testing.assert_allclose(predicted.itm_score, retrieval(**features()).itm_score.numpy(), atol=1e-5)


def test_a_batch_feature_is_taken_as_first_argument(tiny_checkpoints):
    model = captioner(tiny_checkpoints)
    batch = BatchFeature({**features(), "labels": LABELS})
    expected = model(**features(), labels=LABELS)
    found = model(batch)
    np.testing.assert_allclose(found.logits.numpy(), expected.logits.numpy(), atol=1e-6)
    assert float(found.loss) == pytest.approx(float(expected.loss), rel=1e-6)
    assert model.evaluate(batch, verbose=0) == pytest.approx(float(expected.loss), rel=1e-5)


@pytest.mark.parametrize(
    ("change", "kind", "message"),
    [
        ({"input_ids": IDS.astype(np.float32)}, TypeError, "input_ids must be integers, got float32"),
        ({"labels": LABELS[:, :4]}, ValueError, r"labels must have the shape of input_ids \(2, 7\)"),
        ({"pixel_values": PIXELS[:, :2]}, ValueError, "pixel_values"),
        ({"input_ids": IDS + 10_000}, ValueError, "input_ids"),
    ],
)
def test_our_input_errors_reach_the_caller_unwrapped(tiny_checkpoints, change, kind, message):
    model = captioner(tiny_checkpoints)
    with pytest.raises(kind, match=message) as raised:
        model({**features(), "labels": LABELS, **change})
    assert type(raised.value) is kind
    assert "Exception encountered when calling" not in str(raised.value)
    assert "Arguments received" not in str(raised.value)


def test_save_names_the_formats_that_work(tiny_checkpoints, tmp_path):
    model = captioner(tiny_checkpoints)
    with pytest.raises(ValueError, match=r"use model.save_pretrained\(folder\)"):
        model.save(tmp_path / "model.keras")
    assert not list(tmp_path.iterdir())


def test_a_model_is_built_when_constructed(tiny_checkpoints):
    loaded = blip_tf.TFBlipForConditionalGeneration.from_pretrained(tiny_checkpoints["BlipForConditionalGeneration"])
    made = blip_tf.TFBlipForConditionalGeneration(loaded.config)
    assert made.built
    assert made.count_params() == loaded.count_params() > 0
    assert [w.shape for w in made.weights] == [w.shape for w in loaded.weights]
    assert made(**features()).logits.shape == (2, 7, loaded.config.text_config.vocab_size)
    again = blip_tf.TFBlipForConditionalGeneration.from_config(made.get_config())
    assert again.config.to_dict() == made.config.to_dict()
    assert again.count_params() == made.count_params()
