"""Training the Keras task models on `blip_core.training` batches. Twin of `blip_torch/training.py`.

`train` is the same loop as PyTorch's (for parity); `fit` is the Keras-native path: compile
and `model.fit` on a `tf.data` pipeline, training on the model's own loss (or, for image-text
matching, the ITM + ITC loss computed by the model's `compute_loss`).
The original BLIP's objectives (`blip_core.training.paper` batches): `caption_loss` (label smoothing 0.1),
`weighted_vqa_loss` (several weighted answers per question) and `retrieval_losses` (ITC + ITM on in-batch
hard negatives), computed from the models' public sub-modules; `train` runs them, `fit` does not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from blip_core.config.model_constants import IGNORE_INDEX, ITC_TEMPERATURE, ORIGINAL_LABEL_SMOOTHING
from blip_core.modeling.limits import check_loss_rows
from blip_core.training.paper import (
    RETRIEVAL_KEYS,
    VQA_KEYS,
    as_generator,
    check_batch_keys,
    contrastive_targets,
    sample_hard_negatives,
)


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


def token_losses(logits: tf.Tensor, labels: tf.Tensor, label_smoothing: float) -> tf.Tensor:
    """(B, T-1) float32 next-token cross-entropy of logits[:, :-1] (B, T, V) against labels[:, 1:], with label
    smoothing (PyTorch's rule: (1 - s) * NLL + s * mean over the vocabulary of -log p), 0 where labels are -100."""
    log_probs = tf.nn.log_softmax(tf.cast(logits[:, :-1], tf.float32), axis=-1)
    targets = tf.cast(labels[:, 1:], tf.int32)
    keep = targets != IGNORE_INDEX
    picked = tf.gather(log_probs, tf.where(keep, targets, 0), batch_dims=2)
    per_token = -(1.0 - label_smoothing) * picked - label_smoothing * tf.reduce_mean(log_probs, axis=-1)
    return per_token * tf.cast(keep, tf.float32)


def caption_loss(
    model: Any, batch: dict[str, tf.Tensor], label_smoothing: float = ORIGINAL_LABEL_SMOOTHING, training: bool = True
) -> tf.Tensor:
    """The captioning loss with the given label smoothing (the original's 0.1 by default, whatever the config
    says): the mean over the tokens whose label is not -100 (the prompt masked by `caption_examples`)."""
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    logits = model(**inputs, training=training).logits
    losses = token_losses(logits, batch["labels"], label_smoothing)
    tokens = tf.reduce_sum(tf.cast(batch["labels"][:, 1:] != IGNORE_INDEX, tf.float32))
    return tf.reduce_sum(losses) / tf.maximum(tokens, 1.0)


def answer_token_losses(
    model: Any, batch: dict[str, tf.Tensor], repeats: tf.Tensor | int, label_smoothing: float, training: bool = True
) -> tf.Tensor:
    """Twin of `blip_torch.training.answer_token_losses`: (answers, La-1) token losses, each answer decoded over
    its question's encoder states repeated `repeats` times."""
    image_embeds = model.vision_model(
        pixel_values=batch["pixel_values"], return_dict=True, training=training
    ).last_hidden_state
    question_states = model.text_encoder(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        encoder_hidden_states=image_embeds,
        return_dict=True,
        training=training,
    ).last_hidden_state
    logits = model.text_decoder(
        input_ids=batch["decoder_input_ids"],
        attention_mask=batch["decoder_attention_mask"],
        encoder_hidden_states=tf.repeat(question_states, repeats, axis=0),
        encoder_attention_mask=tf.repeat(batch["attention_mask"], repeats, axis=0),
        return_dict=True,
        training=training,
    ).logits
    return token_losses(logits, batch["labels"], label_smoothing)


def weighted_vqa_loss(model: Any, batch: dict[str, tf.Tensor], training: bool = True) -> tf.Tensor:
    """The original VQA objective on a `weighted_vqa_examples` batch: each question's states repeated for its
    `n` answers, every answer's decoder loss summed over its tokens (label smoothing 0.1), and
    `sum(weights * answer_loss) / questions`. Raises ValueError when `n` does not fit the batch (eager only)."""
    check_batch_keys(batch, (*VQA_KEYS, "n", "weights"), "weighted_vqa_examples")
    counts, questions = batch["n"], batch["input_ids"].shape[0]
    if (
        tuple(counts.shape) != (questions,)
        or int(tf.reduce_sum(counts)) != batch["decoder_input_ids"].shape[0]
        or (bool(tf.reduce_any(counts < 1)))
    ):
        raise ValueError(
            f"n must give each of the {questions} questions >= 1 answers, summing to the "
            f"{batch['decoder_input_ids'].shape[0]} answers; got {counts.numpy().tolist()}"
        )
    answer_losses = tf.reduce_sum(answer_token_losses(model, batch, counts, ORIGINAL_LABEL_SMOOTHING, training), 1)
    return tf.reduce_sum(tf.cast(batch["weights"], tf.float32) * answer_losses) / questions


def itc_features(
    model: Any, batch: dict[str, tf.Tensor], training: bool = True
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Twin of `blip_torch.training.itc_features`: the vision states and the L2-normalised float32 ITC projections
    of the images and of the texts."""
    image_embeds = model.vision_model(
        pixel_values=batch["pixel_values"], return_dict=True, training=training
    ).last_hidden_state
    text_states = model.text_encoder(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], return_dict=True, training=training
    ).last_hidden_state
    image_feat = tf.math.l2_normalize(tf.cast(model.vision_proj(image_embeds[:, 0]), tf.float32), -1, 1e-24)
    text_feat = tf.math.l2_normalize(tf.cast(model.text_proj(text_states[:, 0]), tf.float32), -1, 1e-24)
    return image_embeds, image_feat, text_feat


def itm_pair_logits(
    model: Any,
    texts: tf.Tensor,
    masks: tf.Tensor,
    image_embeds: tf.Tensor,
    negative_texts: tf.Tensor,
    negative_masks: tf.Tensor,
    negative_images: tf.Tensor,
    training: bool = True,
) -> tf.Tensor:
    """Twin of `blip_torch.training.itm_pair_logits`: (3B, 2) float32 ITM logits of the positives, each text with
    its negative image, and each negative text with the image."""
    pair_states = model.text_encoder(
        input_ids=tf.concat([texts, texts, negative_texts], axis=0),
        attention_mask=tf.concat([masks, masks, negative_masks], axis=0),
        encoder_hidden_states=tf.concat([image_embeds, negative_images, image_embeds], axis=0),
        return_dict=True,
        training=training,
    ).last_hidden_state
    return tf.cast(model.itm_head(pair_states[:, 0]), tf.float32)


def retrieval_losses(
    model: Any,
    batch: dict[str, tf.Tensor],
    rng: np.random.Generator | int | None = None,
    temperature: float = ITC_TEMPERATURE,
    same_image_positives: bool = False,
    training: bool = True,
) -> tuple[tf.Tensor, tf.Tensor]:
    """(ITC loss, ITM loss) of a `retrieval_examples` batch, as the original `BLIP_Retrieval.forward` without its
    momentum encoders and queues: ITC on the in-batch similarity (the diagonal as targets, as the original; spread
    over the pairs of one image id with `same_image_positives`), ITM
    on the B positives, each text with a hard negative image and each image with a hard negative text
    (`blip_core.training.paper.sample_hard_negatives`, drawn from `rng`; eager only). Raises ValueError as that
    does."""
    check_batch_keys(batch, RETRIEVAL_KEYS, "retrieval_examples")
    ids = batch["image_ids"]
    image_embeds, image_feat, text_feat = itc_features(model, batch, training)
    similarity = tf.matmul(image_feat, text_feat, transpose_b=True) / temperature  # (images, texts)
    targets = tf.constant(contrastive_targets(ids.numpy(), same_image_positives))
    image_to_text = -tf.reduce_mean(tf.reduce_sum(tf.nn.log_softmax(similarity, axis=1) * targets, axis=1))
    text_to_image = -tf.reduce_mean(tf.reduce_sum(tf.nn.log_softmax(tf.transpose(similarity), axis=1) * targets, 1))
    negative_images, negative_texts = sample_hard_negatives(
        tf.stop_gradient(similarity).numpy(), ids.numpy(), as_generator(rng)
    )
    texts, masks = batch["itm_input_ids"], batch["attention_mask"]
    negatives = (
        tf.gather(texts, negative_texts), tf.gather(masks, negative_texts), tf.gather(image_embeds, negative_images)
    )
    itm_logits = itm_pair_logits(model, texts, masks, image_embeds, *negatives, training=training)  # (3B, 2)
    rows = ids.shape[0]
    itm_labels = tf.concat([tf.ones(rows, tf.int32), tf.zeros(2 * rows, tf.int32)], axis=0)
    itm = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(itm_labels, itm_logits))
    return (image_to_text + text_to_image) / 2, itm


def batch_loss(
    model: Any,
    batch: dict[str, tf.Tensor],
    training: bool = True,
    rng: np.random.Generator | int | None = None,
    label_smoothing: float | None = None,
) -> tf.Tensor:
    """The training loss of one batch, chosen by its keys: `image_ids` -> ITC + ITM with hard negatives (drawn
    from `rng`); `weights` -> the weighted-answer VQA loss; `match` -> ITM + ITC; else the model's own loss, or
    `caption_loss` when `label_smoothing` is given."""
    if "image_ids" in batch:
        return sum(retrieval_losses(model, batch, rng, training=training))
    if "weights" in batch:
        return weighted_vqa_loss(model, batch, training)
    if "match" in batch:
        return itm_loss(model, batch, training)
    if label_smoothing is not None:
        return caption_loss(model, batch, label_smoothing, training)
    return model(**batch, training=training).loss


def train(
    model: Any,
    batches: Iterable[dict[str, np.ndarray]],
    learning_rate: float = 1e-4,
    weight_decay: float = 0.01,
    optimizer: Any = None,
    on_step: Callable[[int, float], None] | None = None,
    seed: int = 0,
    label_smoothing: float | None = None,
) -> list[float]:
    """Train on each batch once (AdamW unless an optimizer is given), like the PyTorch loop. `seed` seeds the
    hard-negative draws of retrieval batches (the same negatives as PyTorch's); `label_smoothing` goes to
    `batch_loss`."""
    optimizer = optimizer or keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    losses = []
    for step, batch in enumerate(batches):
        with tf.GradientTape() as tape:
            loss = batch_loss(model, to_tensors(batch, model), True, rng, label_smoothing)
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


class _PyTorchAdamW(keras.optimizers.Optimizer):
    """AdamW as `torch.optim.AdamW` computes it, so that fine-tuning takes the same steps in both frameworks.

    Keras' own Adam adds epsilon to the raw sqrt(v) and folds the bias corrections into the step size
    (`lr * sqrt(1 - b2^t) / (1 - b1^t)`), the paper's "epsilon hat"; PyTorch adds it to the bias-corrected sqrt(v).
    The two differ where gradients are near epsilon (parameters with no true gradient), by up to the learning
    rate per step. Weight decay is Keras' decoupled `variable -= variable * weight_decay * lr`, PyTorch's too.
    """

    def __init__(
        self,
        learning_rate: Any = 1e-3,
        weight_decay: float = 0.01,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, name="adamw", **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def build(self, var_list: list) -> None:
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        ops = keras.ops
        rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(self.iterations + 1, variable.dtype)
        first_correction = 1 - ops.power(ops.cast(self.beta_1, variable.dtype), step)
        second_correction = 1 - ops.power(ops.cast(self.beta_2, variable.dtype), step)
        index = self._get_variable_index(variable)
        momentum, velocity = self._momentums[index], self._velocities[index]
        self.assign(momentum, momentum * self.beta_1 + gradient * (1 - self.beta_1))
        self.assign(velocity, velocity * self.beta_2 + ops.square(gradient) * (1 - self.beta_2))
        denominator = ops.sqrt(velocity / second_correction) + self.epsilon
        self.assign_sub(variable, rate * (momentum / first_correction) / denominator)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}
