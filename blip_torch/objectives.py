"""The fine-tuning objectives of `blip finetune`, written so that data-parallel workers add up to one process.

Each returns this worker's share of the global step's loss: the SUM of its rows' (or tokens') losses divided by
the step's `normalizer` (`blip_core.training.step_batches`). Summed over micro-batches and workers, the shares
are exactly the loss of one process on the whole global batch, and so are the gradients. `Peers` reaches the other
workers: retrieval's contrastive (ITC) negatives and hard ITM negatives come from every worker's pairs when it
gathers (`--gather-negatives`, as the original `BLIP_Retrieval.forward` does with `all_gather_with_grad`), from
this worker's alone otherwise. Twin of `blip_tf/objectives.py`.

- caption: next-token cross-entropy with label smoothing over the label tokens (the original `BLIP_Decoder`);
- vqa: each question's K weighted answers, each answer's loss summed over its tokens (`BLIP_VQA.forward`);
- retrieval: ITC both ways at temperature 0.07 plus ITM on the positives and one hard negative image per text and
  text per image, drawn by softmax(similarity) over other images' pairs (`BLIP_Retrieval.forward` without its
  momentum encoders and queues).
"""

from __future__ import annotations

from typing import Any

import torch

from blip_core.config.model_constants import ITC_TEMPERATURE
from blip_torch.training import answer_token_losses, itc_features, itm_pair_logits, token_losses


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose gradient reaches each slice's owner: the backward sums every worker's gradient
    of the gathered tensor and keeps this worker's slice (what the original BLIP's `GatherLayer` does)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        import torch.distributed as dist

        ctx.group, ctx.rank, ctx.rows = group, dist.get_rank(group), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, tensor.contiguous(), group=group)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        import torch.distributed as dist

        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows], None


class Peers:
    """The data-parallel workers a loss may look across. `Peers()` is one process (gathers return their input);
    `Peers(group)` gathers over a `torch.distributed` process group (its own, apart from DDP's)."""

    def __init__(self, group: Any = None) -> None:
        self.group = group
        if group is None:
            self.rank, self.world_size = 0, 1
        else:
            import torch.distributed as dist

            self.rank, self.world_size = dist.get_rank(group), dist.get_world_size(group)

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """(workers * B, ...) every worker's rows in rank order, differentiable."""
        return tensor if self.group is None else _GatherWithGrad.apply(tensor, self.group)


def caption_objective(model: Any, batch: dict[str, torch.Tensor], label_smoothing: float, peers: Peers) -> torch.Tensor:
    """This worker's share of the captioning loss: its label tokens' losses summed, over the step's token count."""
    logits = model(
        pixel_values=batch["pixel_values"], input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).logits
    return token_losses(logits, batch["labels"], label_smoothing).sum() / batch["normalizer"][0]


def vqa_objective(model: Any, batch: dict[str, torch.Tensor], label_smoothing: float, peers: Peers) -> torch.Tensor:
    """This worker's share of the weighted-answer VQA loss: sum(weights * answer loss) over the step's questions."""
    slots = batch["decoder_input_ids"].shape[0] // batch["input_ids"].shape[0]  # K answers per question
    answer_losses = answer_token_losses(model, batch, slots, label_smoothing).sum(1)  # (B * K,)
    return (batch["weights"].float() * answer_losses).sum() / batch["normalizer"][0]


def draw_negatives(similarity: torch.Tensor, own_ids: torch.Tensor, all_ids: torch.Tensor, uniforms: torch.Tensor):
    """(B,) int64: for each of this worker's rows, a column of `similarity` (B, N) drawn with probability
    softmax(row) over the columns of other images (`all_ids` (N,) differs from `own_ids` (B,)), by inverse CDF on
    `uniforms` (B,) float64 (`blip_core.training.paper.sample_hard_negatives`' rule). Raises ValueError for a row
    without any other image."""
    scores = similarity.detach().double()
    weights = torch.softmax(scores, dim=1).masked_fill(own_ids[:, None] == all_ids[None, :], 0.0)
    cumulative = weights.cumsum(dim=1)
    if bool((cumulative[:, -1] <= 0).any()):
        raise ValueError("retrieval training needs a negative for every pair: a batch shows one image only")
    targets = uniforms * cumulative[:, -1]
    picked = (cumulative <= targets[:, None]).sum(dim=1)
    return picked.clamp(max=similarity.shape[1] - 1)


def retrieval_objective(model: Any, batch: dict[str, torch.Tensor], label_smoothing: float, peers: Peers):
    """This worker's share of ITC + ITM (see the module docstring); `label_smoothing` is unused (kept for one
    signature across tasks)."""
    image_embeds, image_feat, text_feat = itc_features(model, batch)
    ids, rows = batch["image_ids"], batch["image_ids"].shape[0]
    all_ids = peers.gather(ids)
    image_to_text = image_feat @ peers.gather(text_feat).t() / ITC_TEMPERATURE  # (B, N)
    text_to_image = text_feat @ peers.gather(image_feat).t() / ITC_TEMPERATURE  # (B, N)
    targets = torch.arange(rows, device=ids.device) + peers.rank * rows  # each pair's own column
    itc = torch.nn.functional.cross_entropy(image_to_text, targets, reduction="sum")
    itc = itc + torch.nn.functional.cross_entropy(text_to_image, targets, reduction="sum")
    negative_images = draw_negatives(text_to_image, ids, all_ids, batch["uniforms"][:, 0])
    negative_texts = draw_negatives(image_to_text, ids, all_ids, batch["uniforms"][:, 1])
    texts, masks = batch["input_ids"], batch["attention_mask"]
    all_texts, all_masks, all_embeds = peers.gather(texts), peers.gather(masks), peers.gather(image_embeds)
    negatives = all_texts[negative_texts], all_masks[negative_texts], all_embeds[negative_images]
    itm_logits = itm_pair_logits(model, texts, masks, image_embeds, *negatives)  # (3B, 2): positives, negatives
    itm_labels = torch.cat([torch.ones(rows, dtype=torch.long), torch.zeros(2 * rows, dtype=torch.long)])
    itm = torch.nn.functional.cross_entropy(itm_logits, itm_labels.to(itm_logits.device), reduction="sum")
    normalizer = batch["normalizer"][0]
    return itc / (2 * normalizer) + itm / (3 * normalizer)


OBJECTIVES = {"caption": caption_objective, "vqa": vqa_objective, "retrieval": retrieval_objective}


class Objective(torch.nn.Module):
    """The model with its task's objective as `forward(batch) -> loss`: what DistributedDataParallel wraps, so that
    its gradient hooks see every parameter the objective uses (it reaches the model's sub-modules directly)."""

    def __init__(self, model: torch.nn.Module, task: str, label_smoothing: float, peers: Peers) -> None:
        super().__init__()
        self.model, self.task, self.label_smoothing, self.peers = model, task, label_smoothing, peers

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return OBJECTIVES[self.task](self.model, batch, self.label_smoothing, self.peers)
