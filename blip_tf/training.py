"""Training the Keras task models on `blip_core.training` batches. Twin of `blip_torch/training.py`.

`train` is the same loop as PyTorch's (for parity); `fit` is the Keras-native path: compile
and `model.fit` on a `tf.data` pipeline, training on the model's own loss (or, for image-text
matching, the ITM + ITC loss computed by the model's `compute_loss`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from blip_core.config.model_constants import ITC_TEMPERATURE
from blip_core.modeling.limits import check_loss_rows


def to_tensors(batch: dict[str, np.ndarray], model: Any) -> dict[str, tf.Tensor]:
    """NumPy batch -> tensors (ids int32, floats in the model's dtype)."""
    return {
        key: tf.constant(value, model.dtype if np.issubdtype(value.dtype, np.floating) else tf.int32)
        for key, value in batch.items()
    }


def itm_loss(model: Any, batch: dict[str, tf.Tensor], training: bool = True) -> tf.Tensor:
    """ITM cross-entropy on all pairs + symmetric ITC loss on the matched pairs (`match` == 1)."""
    match = batch["match"]
    inputs = {key: value for key, value in batch.items() if key != "match"}
    scores = model(**inputs, use_itm_head=True, training=training).itm_score  # (pairs, 2)
    return itm_objective(model, inputs, match, scores, training)


def itm_objective(
    model: Any, inputs: dict[str, tf.Tensor], match: tf.Tensor, scores: tf.Tensor, training: bool
) -> tf.Tensor:
    """The ITM + ITC loss given the ITM head's scores (Keras' compute_loss has those already). The
    matched pairs, wherever they sit in the batch, are each other's contrastive negatives; a batch
    without any has no ITC term. Raises ValueError for an empty batch (unchecked inside a graph)."""
    check_loss_rows("the image-text matching loss", match.shape[0])
    match = tf.cast(match, tf.int32)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(match, tf.cast(scores, tf.float32)))
    matched_rows = tf.equal(match, 1)
    count = tf.reduce_sum(tf.cast(matched_rows, tf.int32))

    def contrastive() -> tf.Tensor:
        matched = {key: tf.boolean_mask(value, matched_rows) for key, value in inputs.items()}
        similarity = model(**matched, use_itm_head=False, training=training).itm_score
        similarity = tf.cast(similarity, tf.float32) / ITC_TEMPERATURE  # (matched, matched)
        targets = tf.range(count)
        forward = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, similarity))
        backward = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, tf.transpose(similarity)))
        return (forward + backward) / 2

    # Forced difference: the batch's match labels are only known when it runs (Keras traces `fit`), so the
    # branch is a tf.cond; with no matched pair the model never runs on an empty batch, eager or traced.
    return loss + tf.cond(count > 0, contrastive, lambda: tf.zeros((), tf.float32))


def batch_loss(model: Any, batch: dict[str, tf.Tensor], training: bool = True) -> tf.Tensor:
    """The training loss of one batch: ITM's when the batch has `match`, else the model's own."""
    return itm_loss(model, batch, training) if "match" in batch else model(**batch, training=training).loss


def train(
    model: Any,
    batches: Iterable[dict[str, np.ndarray]],
    learning_rate: float = 1e-4,
    weight_decay: float = 0.01,
    optimizer: Any = None,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train on each batch once (AdamW unless an optimizer is given), like the PyTorch loop."""
    optimizer = optimizer or keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
    losses = []
    for step, batch in enumerate(batches):
        with tf.GradientTape() as tape:
            loss = batch_loss(model, to_tensors(batch, model))
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        losses.append(float(loss))
        if on_step is not None:
            on_step(step, losses[-1])
    return losses


def fit(
    model: Any,
    examples: dict[str, np.ndarray],
    batch_size: int = 32,
    epochs: int = 1,
    learning_rate: float = 1e-4,
    seed: int = 0,
    **fit_kwargs: Any,
) -> keras.callbacks.History:
    """The Keras-native path: `compile` then `fit` on a shuffled `tf.data` pipeline of the examples
    (shuffled each epoch, seeded, so matching batches mix matched and unmatched pairs)."""
    features = {key: value for key, value in examples.items() if key != "match"}
    data = (features, examples["match"]) if "match" in examples else features
    rows = len(next(iter(features.values())))
    dataset = tf.data.Dataset.from_tensor_slices(data).shuffle(rows, seed=seed).batch(batch_size)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=learning_rate))
    return model.fit(dataset, epochs=epochs, **fit_kwargs)
