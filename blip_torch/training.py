"""A training loop for the task models on `blip_core.training` batches. Twin of `blip_tf/training.py`.

Captioning and VQA train on the model's own loss; image-text matching on the ITM head's
cross-entropy over matched/unmatched pairs plus the contrastive (ITC) loss of the matched ones.
The original BLIP's objectives (`blip_core.training.paper` batches): `caption_loss` (label smoothing 0.1),
`weighted_vqa_loss` (several weighted answers per question) and `retrieval_losses` (ITC + ITM on in-batch
hard negatives), computed from the models' public sub-modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

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


def token_losses(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """(B, T-1) float32 next-token cross-entropy of logits[:, :-1] (B, T, V) against labels[:, 1:], with label
    smoothing (PyTorch's rule: (1 - s) * NLL + s * mean over the vocabulary of -log p), 0 where labels are -100."""
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    picked = log_probs.gather(-1, targets.masked_fill(~keep, 0).unsqueeze(-1)).squeeze(-1)
    per_token = -(1.0 - label_smoothing) * picked - label_smoothing * log_probs.mean(-1)
    return per_token * keep


def caption_loss(
    model: Any, batch: dict[str, torch.Tensor], label_smoothing: float = ORIGINAL_LABEL_SMOOTHING
) -> torch.Tensor:
    """The captioning loss with the given label smoothing (the original's 0.1 by default, whatever the config
    says): the mean over the tokens whose label is not -100 (the prompt masked by `caption_examples`)."""
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    logits = model(**inputs).logits
    losses = token_losses(logits, batch["labels"], label_smoothing)
    tokens = (batch["labels"][:, 1:] != IGNORE_INDEX).sum().float()
    return losses.sum() / tokens.clamp(min=1.0)


def answer_token_losses(
    model: Any, batch: dict[str, torch.Tensor], repeats: torch.Tensor | int, label_smoothing: float
) -> torch.Tensor:
    """(answers, La-1) token losses of the answers in `batch["decoder_input_ids"]`, each decoded over its question's
    encoder states: the B questions' states repeated `repeats` times ((B,) answers per question, or one count for
    all), as the original `BLIP_VQA.forward(train=True)` does."""
    image_embeds = model.vision_model(pixel_values=batch["pixel_values"], return_dict=True).last_hidden_state
    question_states = model.text_encoder(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        encoder_hidden_states=image_embeds,
        return_dict=True,
    ).last_hidden_state
    logits = model.text_decoder(
        input_ids=batch["decoder_input_ids"],
        attention_mask=batch["decoder_attention_mask"],
        encoder_hidden_states=question_states.repeat_interleave(repeats, dim=0),
        encoder_attention_mask=batch["attention_mask"].repeat_interleave(repeats, dim=0),
        return_dict=True,
    ).logits
    return token_losses(logits, batch["labels"], label_smoothing)


def weighted_vqa_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The original VQA objective on a `weighted_vqa_examples` batch: each question's states repeated for its
    `n` answers, every answer's decoder loss summed over its tokens (label smoothing 0.1), and
    `sum(weights * answer_loss) / questions`. Raises ValueError when `n` does not fit the batch."""
    check_batch_keys(batch, (*VQA_KEYS, "n", "weights"), "weighted_vqa_examples")
    counts, questions = batch["n"], batch["input_ids"].shape[0]
    if counts.shape != (questions,) or int(counts.sum()) != batch["decoder_input_ids"].shape[0] or (counts < 1).any():
        raise ValueError(
            f"n must give each of the {questions} questions >= 1 answers, summing to the "
            f"{batch['decoder_input_ids'].shape[0]} answers; got {counts.tolist()}"
        )
    answer_losses = answer_token_losses(model, batch, counts, ORIGINAL_LABEL_SMOOTHING).sum(1)  # (answers,)
    return (batch["weights"].float() * answer_losses).sum() / questions


def itc_features(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image_embeds (B, patches + 1, D), image_feat (B, E), text_feat (B, E)): the vision states and the
    L2-normalised float32 ITC projections of the images and of the texts (`input_ids`, encoded without image)."""
    image_embeds = model.vision_model(pixel_values=batch["pixel_values"], return_dict=True).last_hidden_state
    text_states = model.text_encoder(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], return_dict=True
    ).last_hidden_state
    image_feat = torch.nn.functional.normalize(model.vision_proj(image_embeds[:, 0]).float(), dim=-1)
    text_feat = torch.nn.functional.normalize(model.text_proj(text_states[:, 0]).float(), dim=-1)
    return image_embeds, image_feat, text_feat


def itm_pair_logits(
    model: Any,
    texts: torch.Tensor,
    masks: torch.Tensor,
    image_embeds: torch.Tensor,
    negative_texts: torch.Tensor,
    negative_masks: torch.Tensor,
    negative_images: torch.Tensor,
) -> torch.Tensor:
    """(3B, 2) float32 ITM logits of the B positive pairs, each text with its negative image, and each negative text
    with the image (the original `BLIP_Retrieval.forward`'s order)."""
    pair_states = model.text_encoder(
        input_ids=torch.cat([texts, texts, negative_texts]),
        attention_mask=torch.cat([masks, masks, negative_masks]),
        encoder_hidden_states=torch.cat([image_embeds, negative_images, image_embeds]),
        return_dict=True,
    ).last_hidden_state
    return model.itm_head(pair_states[:, 0]).float()


def retrieval_losses(
    model: Any,
    batch: dict[str, torch.Tensor],
    rng: np.random.Generator | int | None = None,
    temperature: float = ITC_TEMPERATURE,
    same_image_positives: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ITC loss, ITM loss) of a `retrieval_examples` batch, as the original `BLIP_Retrieval.forward` without its
    momentum encoders and queues: ITC on the in-batch similarity (the diagonal as targets, as the original; spread
    over the pairs of one image id with `same_image_positives`), ITM
    on the B positives, each text with a hard negative image and each image with a hard negative text
    (`blip_core.training.paper.sample_hard_negatives`, drawn from `rng`). Raises ValueError as that does."""
    check_batch_keys(batch, RETRIEVAL_KEYS, "retrieval_examples")
    ids = batch["image_ids"]
    image_embeds, image_feat, text_feat = itc_features(model, batch)
    similarity = image_feat @ text_feat.t() / temperature  # (images, texts)
    targets = torch.as_tensor(contrastive_targets(ids.cpu().numpy(), same_image_positives), device=similarity.device)
    image_to_text = -(torch.log_softmax(similarity, dim=1) * targets).sum(1).mean()
    text_to_image = -(torch.log_softmax(similarity.t(), dim=1) * targets).sum(1).mean()
    negative_images, negative_texts = sample_hard_negatives(
        similarity.detach().cpu().numpy(), ids.cpu().numpy(), as_generator(rng)
    )
    negative_images = torch.as_tensor(negative_images, device=ids.device)
    negative_texts = torch.as_tensor(negative_texts, device=ids.device)
    texts, masks = batch["itm_input_ids"], batch["attention_mask"]
    negatives = texts[negative_texts], masks[negative_texts], image_embeds[negative_images]
    itm_logits = itm_pair_logits(model, texts, masks, image_embeds, *negatives)  # (3B, 2)
    rows = ids.shape[0]
    itm_labels = torch.cat([torch.ones(rows, dtype=torch.long), torch.zeros(2 * rows, dtype=torch.long)])
    itm = torch.nn.functional.cross_entropy(itm_logits, itm_labels.to(itm_logits.device))
    return (image_to_text + text_to_image) / 2, itm


def batch_loss(
    model: Any,
    batch: dict[str, torch.Tensor],
    rng: np.random.Generator | int | None = None,
    label_smoothing: float | None = None,
) -> torch.Tensor:
    """The training loss of one batch, chosen by its keys: `image_ids` -> ITC + ITM with hard negatives (drawn
    from `rng`); `weights` -> the weighted-answer VQA loss; `match` -> ITM + ITC; else the model's own loss, or
    `caption_loss` when `label_smoothing` is given."""
    if "image_ids" in batch:
        return sum(retrieval_losses(model, batch, rng))
    if "weights" in batch:
        return weighted_vqa_loss(model, batch)
    if "match" in batch:
        return itm_loss(model, batch)
    if label_smoothing is not None:
        return caption_loss(model, batch, label_smoothing)
    return model(**batch).loss


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
    """Train on each batch once (AdamW unless an optimizer is given); the model ends in eval mode. `seed` seeds
    the hard-negative draws of retrieval batches; `label_smoothing` goes to `batch_loss`."""
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    model.train()
    rng = np.random.default_rng(seed)
    losses = []
    for step, batch in enumerate(batches):
        loss = batch_loss(model, to_tensors(batch, model), rng, label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, losses[-1])
    model.eval()
    return losses
