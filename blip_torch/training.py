"""A training loop for the task models on `blip_core.training` batches. Twin of `blip_tf/training.py`.

Captioning and VQA train on the model's own loss; image-text matching on the ITM head's
cross-entropy over matched/unmatched pairs plus the contrastive (ITC) loss of the matched ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from blip_core.config.model_constants import ITC_TEMPERATURE
from blip_core.modeling.limits import check_loss_rows


def to_tensors(batch: dict[str, np.ndarray], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """NumPy batch -> tensors on the model's device (floats in its dtype)."""
    device, dtype = model.device, model.dtype
    return {
        key: torch.as_tensor(value).to(device, dtype if np.issubdtype(value.dtype, np.floating) else None)
        for key, value in batch.items()
    }


def itm_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """ITM cross-entropy on all pairs + symmetric ITC loss on the matched pairs (`match` == 1)."""
    match = batch["match"]
    inputs = {key: value for key, value in batch.items() if key != "match"}
    scores = model(**inputs, use_itm_head=True).itm_score  # (pairs, 2)
    return itm_objective(model, inputs, match, scores)


def itm_objective(
    model: Any, inputs: dict[str, torch.Tensor], match: torch.Tensor, scores: torch.Tensor
) -> torch.Tensor:
    """The ITM + ITC loss given the ITM head's scores. The matched pairs, wherever they sit in the
    batch, are each other's contrastive negatives; a batch without any has no ITC term. Raises
    ValueError for an empty batch."""
    check_loss_rows("the image-text matching loss", match.shape[0])
    loss = torch.nn.functional.cross_entropy(scores.float(), match)
    matched_rows = match == 1
    count = int(matched_rows.sum())
    if count == 0:  # no matched pair: no contrastive term, and the model never runs on an empty batch
        return loss
    matched = {key: value[matched_rows] for key, value in inputs.items()}
    similarity = model(**matched, use_itm_head=False).itm_score.float() / ITC_TEMPERATURE  # (matched, matched)
    targets = torch.arange(count, device=similarity.device)
    forward = torch.nn.functional.cross_entropy(similarity, targets)
    backward = torch.nn.functional.cross_entropy(similarity.t(), targets)
    return loss + (forward + backward) / 2


def batch_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The training loss of one batch: ITM's when the batch has `match`, else the model's own."""
    return itm_loss(model, batch) if "match" in batch else model(**batch).loss


def train(
    model: Any,
    batches: Iterable[dict[str, np.ndarray]],
    learning_rate: float = 1e-4,
    weight_decay: float = 0.01,
    optimizer: Any = None,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train on each batch once (AdamW unless an optimizer is given); the model ends in eval mode."""
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    model.train()
    losses = []
    for step, batch in enumerate(batches):
        loss = batch_loss(model, to_tensors(batch, model))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, losses[-1])
    model.eval()
    return losses
