"""The fine-tuning objectives of `blip finetune` in Keras. Twin of `blip_torch/objectives.py` (read its docstring);
differences only: the peers are the replicas of a `tf.distribute` strategy (`ReplicaContext.all_gather`, whose
gradient reaches each slice's owner), every step runs inside Keras' traced `train_step`, and Keras' optimizer SUMS
the replicas' gradients (PyTorch's DDP averages), so a replica's share needs no world-size factor.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from blip_core.config.model_constants import ITC_TEMPERATURE
from blip_tf.training import answer_token_losses, itc_features, itm_pair_logits, token_losses


class TFPeers:
    """The data-parallel replicas a loss may look across. `TFPeers()` is one replica (gathers return their input);
    `TFPeers(group)` gathers over `group`, a `tf.distribute.ReplicaContext` with more than one replica."""

    def __init__(self, group: Any = None) -> None:
        if group is not None and group.num_replicas_in_sync == 1:
            group = None  # Forced difference: the default strategy's context has nothing to gather from
        self.group = group
        if group is None:
            self.rank, self.world_size = 0, 1
        else:
            self.rank, self.world_size = group.replica_id_in_sync_group, group.num_replicas_in_sync

    def gather(self, tensor: tf.Tensor) -> tf.Tensor:
        """(replicas * B, ...) every replica's rows in replica order, differentiable."""
        if self.group is None:
            return tensor
        gathered = self.group.all_gather(tensor, axis=0)
        return _dense_gradient(gathered) if gathered.dtype.is_floating else gathered


@tf.custom_gradient
def _dense_gradient(tensor: tf.Tensor) -> tuple[tf.Tensor, Any]:
    """`tensor`, whose gradient reaches the op before it dense: the gradient of `all_gather` cannot take the
    IndexedSlices that `tf.gather` (picking hard negatives) hands back."""
    return tf.identity(tensor), lambda upstream: tf.convert_to_tensor(upstream)


def caption_objective(model: Any, batch: dict[str, tf.Tensor], label_smoothing: float, peers: TFPeers) -> tf.Tensor:
    """This replica's share of the captioning loss: its label tokens' losses summed, over the step's token count."""
    logits = model(
        pixel_values=batch["pixel_values"],
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        training=True,
    ).logits
    return tf.reduce_sum(token_losses(logits, batch["labels"], label_smoothing)) / batch["normalizer"][0]


def vqa_objective(model: Any, batch: dict[str, tf.Tensor], label_smoothing: float, peers: TFPeers) -> tf.Tensor:
    """This replica's share of the weighted-answer VQA loss: sum(weights * answer loss) over the step's questions."""
    slots = tf.shape(batch["decoder_input_ids"])[0] // tf.shape(batch["input_ids"])[0]  # K answers per question
    answer_losses = tf.reduce_sum(answer_token_losses(model, batch, slots, label_smoothing), axis=1)  # (B * K,)
    return tf.reduce_sum(tf.cast(batch["weights"], tf.float32) * answer_losses) / batch["normalizer"][0]


def draw_negatives(similarity: tf.Tensor, own_ids: tf.Tensor, all_ids: tf.Tensor, uniforms: tf.Tensor) -> tf.Tensor:
    """Twin of `blip_torch.objectives.draw_negatives`: (B,) int64 columns of `similarity` (B, N) drawn by inverse
    CDF on `uniforms` (B,) float64 over softmax(row), other images only. A row without any other image fails the
    step with InvalidArgumentError (the traced step cannot raise ValueError)."""
    scores = tf.cast(tf.stop_gradient(similarity), tf.float64)
    weights = tf.where(own_ids[:, None] == all_ids[None, :], tf.zeros_like(scores), tf.nn.softmax(scores, axis=1))
    cumulative = tf.cumsum(weights, axis=1)
    tf.debugging.assert_positive(
        cumulative[:, -1], "retrieval training needs a negative for every pair: a batch shows one image only"
    )
    targets = uniforms * cumulative[:, -1]
    picked = tf.reduce_sum(tf.cast(cumulative <= targets[:, None], tf.int64), axis=1)
    return tf.minimum(picked, tf.cast(tf.shape(similarity)[1] - 1, tf.int64))


def retrieval_objective(model: Any, batch: dict[str, tf.Tensor], label_smoothing: float, peers: TFPeers) -> tf.Tensor:
    """This replica's share of ITC + ITM (see the torch twin); `label_smoothing` is unused."""
    image_embeds, image_feat, text_feat = itc_features(model, batch)
    ids, rows = batch["image_ids"], tf.shape(batch["image_ids"])[0]
    all_ids = peers.gather(ids)
    image_to_text = tf.matmul(image_feat, peers.gather(text_feat), transpose_b=True) / ITC_TEMPERATURE  # (B, N)
    text_to_image = tf.matmul(text_feat, peers.gather(image_feat), transpose_b=True) / ITC_TEMPERATURE  # (B, N)
    targets = tf.range(rows) + tf.cast(peers.rank, tf.int32) * rows  # each pair's own column
    itc = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, image_to_text))
    itc = itc + tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, text_to_image))
    negative_images = draw_negatives(text_to_image, ids, all_ids, batch["uniforms"][:, 0])
    negative_texts = draw_negatives(image_to_text, ids, all_ids, batch["uniforms"][:, 1])
    texts, masks = batch["input_ids"], batch["attention_mask"]
    all_texts, all_masks, all_embeds = peers.gather(texts), peers.gather(masks), peers.gather(image_embeds)
    negatives = (
        tf.gather(all_texts, negative_texts),
        tf.gather(all_masks, negative_texts),
        tf.gather(all_embeds, negative_images),
    )
    itm_logits = itm_pair_logits(model, texts, masks, image_embeds, *negatives)  # (3B, 2): positives, negatives
    itm_labels = tf.concat([tf.ones(rows, tf.int32), tf.zeros(2 * rows, tf.int32)], axis=0)
    itm = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(itm_labels, itm_logits))
    normalizer = batch["normalizer"][0]
    return itc / (2 * normalizer) + itm / (3 * normalizer)


OBJECTIVES = {"caption": caption_objective, "vqa": vqa_objective, "retrieval": retrieval_objective}


class TFObjective:
    """Twin of `Objective`: the model with its task's objective as `call(batch) -> loss`. Forced difference: a plain
    object, made inside each replica's traced step (its peers are that replica's context); Keras needs no wrapper
    for gradient hooks."""

    def __init__(self, model: Any, task: str, label_smoothing: float, peers: TFPeers) -> None:
        self.model, self.task, self.label_smoothing, self.peers = model, task, label_smoothing, peers

    def call(self, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        return OBJECTIVES[self.task](self.model, batch, self.label_smoothing, self.peers)
