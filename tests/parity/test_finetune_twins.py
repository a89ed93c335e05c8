"""`finetune` twins: the same run in blip_torch (a plain loop) and blip_tf (Keras `fit`) sees the same batches, the
same learning rates and the same hard negatives, and ends with the same parameters (SGD, 3 steps) and, under AdamW,
the same model outputs; both write a checkpoint the other framework loads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blip_core.finetune import finetune
from tests.helpers.finetune_runs import MODELS, largest_difference, weights, write_data

SGD = {"optimizer": "sgd", "learning_rate": 0.05, "weight_decay": 0.0, "lr_scheduler_type": "constant"}
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("finetune_twin_data"), count=16)


def both(task, data, root, **options):
    for framework in ("pt", "tf"):
        finetune(task, MODELS[task], data, root / framework, framework=framework, progress=False, **options)
    return root / "pt", root / "tf"


@pytest.mark.parametrize("task", ["caption", "vqa", "retrieval"])
def test_sgd_steps_agree(task, data, tmp_path):
    pt, tf = both(task, data, tmp_path, max_steps=3, batch_size=8, **SGD)
    difference, name = largest_difference(weights(pt), weights(tf))
    assert difference < TOLERANCE, f"{name} differs by {difference}"
    moved, _ = largest_difference(weights(pt), weights(MODELS[task]))
    assert moved > 1e-3
    losses = [[json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()] for run in (pt, tf)]
    np.testing.assert_allclose(losses[0], losses[1], rtol=TOLERANCE)


def test_adamw_outputs_agree(data, tmp_path):
    """AdamW with warm-up, cosine decay and weight decay, compared on the models' logits: AdamW moves a parameter
    by about the learning rate whatever its gradient's size, so where the true gradient is 0 (attention key biases)
    or tiny float noise decides the step. Key biases do not change the outputs; the captions are another image's
    (the demo model already fits the right ones, and its gradients on them are mostly noise) and label smoothing is
    off (its p - s / V cancels on the tokens a batch never shows)."""
    import tensorflow as tf
    import torch

    import blip_tf
    import blip_torch
    from blip_core import BlipProcessor

    options = {"max_steps": 3, "batch_size": 8, "learning_rate": 1e-3, "warmup_steps": 1, "weight_decay": 0.05}
    options["label_smoothing"] = 0.0
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    lines = (data / "captions.jsonl").read_text().splitlines()
    captions = [json.loads(line)["caption"] for line in lines]
    for number, line in enumerate(lines):
        record = json.loads(line)
        (wrong / record["file"]).symlink_to(data / record["file"])
        lines[number] = json.dumps({"file": record["file"], "caption": captions[(number + 1) % len(captions)]})
    (wrong / "captions.jsonl").write_text("\n".join(lines) + "\n")
    pt, tf_run = both("caption", wrong, tmp_path, **options)
    processor = BlipProcessor.from_pretrained(pt)
    images = [np.full((80, 80, 3), shade, np.uint8) for shade in (30, 200)]
    inputs = processor(images=images, text=["two red circles", "a blue square"], padding=True, return_tensors="np")
    with torch.no_grad():
        torch_logits = blip_torch.BlipForConditionalGeneration.from_pretrained(pt)(
            **{k: torch.from_numpy(v) for k, v in inputs.items()}
        ).logits.numpy()
    tf_model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(tf_run)
    tf_logits = tf_model(**{k: tf.constant(v) for k, v in inputs.items()}).logits.numpy()
    gap = np.abs(torch_logits - tf_logits)
    assert gap.max() < 1e-3, gap.max()  # the learning rate: one noise-driven AdamW step (measured 6e-4)
    assert gap.mean() < TOLERANCE, gap.mean()
    before = blip_torch.BlipForConditionalGeneration.from_pretrained(MODELS["caption"], torch_dtype=torch.float32)
    with torch.no_grad():
        start = before(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()
    assert np.abs(start - torch_logits).max() > 1e-2  # training changed the outputs


@pytest.mark.parametrize("task", ["caption", "vqa", "retrieval"])
def test_held_out_metrics_agree(task, data):
    """The evaluation `blip finetune` runs every --eval-steps gives the same numbers in both frameworks."""
    import blip_tf
    import blip_torch
    from blip_core import BlipProcessor
    from blip_core.finetune.data import read_examples
    from blip_core.finetune.evaluation import HeldOutEvaluator
    from blip_torch.finetuning import TASK_CLASSES

    examples = read_examples(task, data)
    processor = BlipProcessor.from_pretrained(MODELS[task])
    torch_model = getattr(blip_torch, TASK_CLASSES[task]).from_pretrained(MODELS[task], torch_dtype="float32")
    tf_model = getattr(blip_tf, "TF" + TASK_CLASSES[task]).from_pretrained(MODELS[task], dtype="float32")
    torch_metrics = HeldOutEvaluator(examples, processor, "pt", batch_size=5)(torch_model.eval(), 0)
    tf_metrics = HeldOutEvaluator(examples, processor, "tf", batch_size=5)(tf_model, 0)
    assert torch_metrics.keys() == tf_metrics.keys() and torch_metrics
    for name, value in torch_metrics.items():
        assert tf_metrics[name] == pytest.approx(value, abs=1e-9), name
