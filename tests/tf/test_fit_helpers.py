"""Keras `fit` through `blip_tf.training.fit` on the training helpers' batches, matching included."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import blip_tf
from blip_core import BlipProcessor
from blip_core.demo.synthetic import samples
from blip_core.training import caption_examples, itm_examples
from blip_tf.training import batch_loss, fit, itm_objective, to_tensors


def data(count=8):
    pairs = samples(7, 0, count)
    return [image for image, _ in pairs], [scene.caption for _, scene in pairs]


def test_fit_trains_a_captioner_on_its_own_loss(small_models):
    folder = small_models["BlipForConditionalGeneration"]
    model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(folder)
    examples = caption_examples(BlipProcessor.from_pretrained(folder), *data())
    before = float(batch_loss(model, to_tensors(examples, model), training=False))
    history = fit(model, examples, batch_size=4, epochs=6, learning_rate=5e-3, verbose=0)
    assert len(history.history["loss"]) == 6 and np.isfinite(history.history["loss"]).all()
    after = float(batch_loss(model, to_tensors(examples, model), training=False))
    assert after < before * 0.8, (before, after)


def test_fit_trains_the_matcher_on_itm_and_itc(small_models):
    folder = small_models["BlipForImageTextRetrieval"]
    model = blip_tf.TFBlipForImageTextRetrieval.from_pretrained(folder)
    examples = itm_examples(BlipProcessor.from_pretrained(folder), *data(), seed=1)
    before = float(batch_loss(model, to_tensors(examples, model), training=False))
    history = fit(model, examples, batch_size=16, epochs=20, learning_rate=5e-3, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = float(batch_loss(model, to_tensors(examples, model), training=False))
    assert after < before * 0.9, (before, after)


def test_itm_objective_does_not_depend_on_where_the_matched_pairs_sit(small_models):
    folder = small_models["BlipForImageTextRetrieval"]
    model = blip_tf.TFBlipForImageTextRetrieval.from_pretrained(folder)
    batch = to_tensors(itm_examples(BlipProcessor.from_pretrained(folder), *data(4), seed=1), model)
    order = tf.constant([4, 0, 5, 1, 6, 2, 7, 3])
    shuffled = {key: tf.gather(value, order) for key, value in batch.items()}
    assert float(batch_loss(model, shuffled, training=False)) == pytest.approx(
        float(batch_loss(model, batch, training=False)), abs=1e-5
    )
    unmatched = {key: value[4:] for key, value in batch.items()}
    inputs = {key: value for key, value in unmatched.items() if key != "match"}
    scores = model(**inputs, use_itm_head=True).itm_score
    expected = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.zeros(4, tf.int32), scores))
    assert float(itm_objective(model, inputs, unmatched["match"], scores, False)) == pytest.approx(
        float(expected), abs=1e-6
    )
