"""The original BLIP's fine-tuning objectives in both frameworks: weighted-answer VQA, ITC + ITM with in-batch
hard negatives, captioning with label smoothing 0.1.

Each loss is checked three ways: equal across blip_torch and blip_tf (1e-4), equal gradients for every parameter
(1e-4), and equal to an independent NumPy reference written from the original algorithm (salesforce/BLIP
`BLIP_VQA.forward(train=True)`, `BLIP_Retrieval.forward`, `med.py`'s smoothed decoder loss), computed from the
models' public forward outputs one pair or answer at a time. A short run in each tree lowers each loss.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch

import blip_tf
import blip_tf.training
import blip_torch
import blip_torch.training
from blip_core import BlipProcessor
from blip_core.config.model_constants import CLS_TOKEN_ID, ENC_TOKEN_ID
from blip_core.training import caption_examples, retrieval_examples, vqa_answer_weights, weighted_vqa_examples
from blip_core.weights import expected_params, to_keras
from tests.helpers.compare import assert_outputs_close
from tests.helpers.images import photo

SMOOTHING = 0.1
TEMPERATURE = 0.07
CLASSES = {
    "caption": "BlipForConditionalGeneration",
    "vqa": "BlipForQuestionAnswering",
    "retrieval": "BlipForImageTextRetrieval",
}
NAMED = {  # a few parameters whose gradients are named in the failure message if they drift
    "vqa": [
        "text_decoder.cls.predictions.transform.dense.weight",
        "text_encoder.encoder.layer.0.crossattention.self.query.weight",
        "vision_model.embeddings.patch_embedding.weight",
    ],
    "retrieval": ["itm_head.weight", "text_proj.weight", "vision_proj.weight", "vision_model.post_layernorm.weight"],
    "caption": ["text_decoder.bert.encoder.layer.1.output.dense.weight", "vision_model.embeddings.class_embedding"],
}


def photos() -> list[np.ndarray]:
    return [photo(name) for name in ("chelsea", "astronaut", "coffee")]


def vqa_records() -> list[tuple]:
    cat, astronaut, coffee = photos()
    return [
        (cat, "what animal is it?", ["cat"] * 7 + ["kitten"] * 2 + ["tiger"], None),  # VQA v2 style: 10 annotators
        (astronaut, "who is this?", ["an astronaut", "a woman"], [0.6, 0.3]),
        (coffee, "what drink is on the table?", ["coffee"], [1.0]),
    ]


def examples(task: str, processor: BlipProcessor) -> dict[str, np.ndarray]:
    cat, astronaut, coffee = photos()
    if task == "vqa":
        return weighted_vqa_examples(processor, vqa_records(), protocol="original")
    if task == "retrieval":
        captions = ["a cat on a table", "an astronaut in a white suit", "a woman in a space suit", "a cup of coffee"]
        flipped = np.ascontiguousarray(astronaut[:, ::-1])  # one image twice, augmented differently, as in training
        return retrieval_examples(processor, [cat, astronaut, flipped, coffee], captions, [7, 3, 3, 9], "original")
    return caption_examples(processor, photos(), ["a cat sitting", "an astronaut", "a cup of coffee"], "a picture of")


def losses_and_gradients(task: str, folder, seed: int = 5):
    batch = examples(task, BlipProcessor.from_pretrained(folder))
    options = {"label_smoothing": SMOOTHING} if task == "caption" else {}
    torch_model = getattr(blip_torch, CLASSES[task]).from_pretrained(folder).train()
    torch_batch = blip_torch.training.to_tensors(batch, torch_model)
    loss_pt = blip_torch.training.batch_loss(torch_model, torch_batch, np.random.default_rng(seed), **options)
    loss_pt.backward()
    tf_model = getattr(blip_tf, "TF" + CLASSES[task]).from_pretrained(folder)
    params = dict(torch_model.named_parameters())
    specs = [
        s
        for s in expected_params(CLASSES[task], tf_model.config)
        if s.name in params and params[s.name].grad is not None
    ]
    variables = [tf_model.variable(s.name, s.kind) for s in specs]
    with tf.GradientTape() as tape:
        tf_batch = blip_tf.training.to_tensors(batch, tf_model)
        loss_tf = blip_tf.training.batch_loss(tf_model, tf_batch, True, np.random.default_rng(seed), **options)
    grads_tf = tape.gradient(loss_tf, variables)
    expected = {s.name: to_keras(params[s.name].grad.numpy(), s.kind, s.leaf) for s in specs}
    actual = {}
    for spec, grad in zip(specs, grads_tf, strict=True):
        assert grad is not None, f"TensorFlow has no gradient for {spec.name}"
        actual[spec.name] = tf.convert_to_tensor(grad).numpy()
    return batch, torch_model, float(loss_pt.detach()), float(loss_tf), expected, actual


@pytest.mark.parametrize("task", sorted(CLASSES))
def test_losses_and_gradients_agree_across_frameworks(small_models, task):
    _, _, loss_pt, loss_tf, expected, actual = losses_and_gradients(task, small_models[CLASSES[task]])
    assert loss_pt > 0.1
    assert abs(loss_tf - loss_pt) < 1e-4 * max(1.0, abs(loss_pt))
    assert len(expected) >= 40
    for name in NAMED[task]:
        matching = [key for key in expected if key.startswith(name)]
        assert matching, f"no gradient for {name}"
        for key in matching:
            scale = max(1e-6, float(np.abs(expected[key]).max()))
            assert np.abs(actual[key] - expected[key]).max() <= 1e-4 * max(1.0, scale), key
            assert np.abs(expected[key]).max() > 0, f"{key} has a zero gradient: the test would not see a change"
    assert_outputs_close(actual, expected)


# ---------------------------------------------------------------------------------------------------------------
# The independent NumPy reference, from the models' public forward outputs.


def smoothed_token_losses(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per next token (T-1,): (1 - 0.1) * -log p(label) + 0.1 * mean_v(-log p(v)); 0 for -100 labels."""
    logits = logits[:-1].astype(np.float64)
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    out = np.zeros(len(log_p))
    for t, label in enumerate(labels[1:]):
        if label != -100:
            out[t] = -(1 - SMOOTHING) * log_p[t, label] - SMOOTHING * log_p[t].mean()
    return out


def test_weighted_vqa_loss_matches_the_numpy_reference(small_models):
    folder = small_models["BlipForQuestionAnswering"]
    batch = examples("vqa", BlipProcessor.from_pretrained(folder))
    model = blip_torch.BlipForQuestionAnswering.from_pretrained(folder)
    t = blip_torch.training.to_tensors(batch, model)
    total, answer = 0.0, 0
    with torch.no_grad():
        images = model.vision_model(pixel_values=t["pixel_values"]).last_hidden_state
        for q in range(len(batch["n"])):  # one question, then each of its answers alone
            length = int(batch["attention_mask"][q].sum())
            states = model.text_encoder(
                input_ids=t["input_ids"][q : q + 1, :length], encoder_hidden_states=images[q : q + 1]
            ).last_hidden_state
            for _ in range(int(batch["n"][q])):
                answer_length = int(batch["decoder_attention_mask"][answer].sum())
                logits = model.text_decoder(
                    input_ids=t["decoder_input_ids"][answer : answer + 1, :answer_length], encoder_hidden_states=states
                ).logits[0]
                per_token = smoothed_token_losses(logits.numpy(), batch["labels"][answer, :answer_length])
                total += float(batch["weights"][answer]) * per_token.sum()
                answer += 1
        expected = total / len(batch["n"])
        actual = float(blip_torch.training.weighted_vqa_loss(model, t))
    assert answer == len(batch["weights"]) == 6
    assert actual == pytest.approx(expected, rel=1e-4)


def reference_negatives(similarity: np.ndarray, ids: np.ndarray, seed: int) -> tuple[list[int], list[int]]:
    """The original's multinomial draw, one uniform per row (image negatives first), by walking the weights."""
    uniforms = np.random.default_rng(seed).random((2, len(ids)))
    picks = []
    for kind, scores in enumerate((similarity.T, similarity)):
        chosen = []
        for row in range(len(ids)):
            p = np.exp(scores[row] - scores[row].max())
            p = p / p.sum()
            p[ids == ids[row]] = 0.0
            target, running, pick = uniforms[kind, row] * p.sum(), 0.0, len(p) - 1
            for column, value in enumerate(p):
                running += value
                if running > target:
                    pick = column
                    break
            chosen.append(pick)
        picks.append(chosen)
    return picks[0], picks[1]


def test_retrieval_losses_match_the_numpy_reference(small_models):
    folder = small_models["BlipForImageTextRetrieval"]
    batch = examples("retrieval", BlipProcessor.from_pretrained(folder))
    ids = batch["image_ids"]
    model = blip_torch.BlipForImageTextRetrieval.from_pretrained(folder)
    t = blip_torch.training.to_tensors(batch, model)
    with torch.no_grad():
        similarity = (
            np.array(
                [  # ITC cosine of image i and text j through the model's own use_itm_head=False forward
                    [
                        float(
                            model(
                                input_ids=t["input_ids"][j : j + 1],
                                pixel_values=t["pixel_values"][i : i + 1],
                                attention_mask=t["attention_mask"][j : j + 1],
                                use_itm_head=False,
                            ).itm_score
                        )
                        for j in range(len(ids))
                    ]
                    for i in range(len(ids))
                ]
            )
            / TEMPERATURE
        )

        def itm_logits(text: int, image: int) -> np.ndarray:
            return (
                model(
                    input_ids=t["itm_input_ids"][text : text + 1],
                    pixel_values=t["pixel_values"][image : image + 1],
                    attention_mask=t["attention_mask"][text : text + 1],
                )
                .itm_score[0]
                .double()
                .numpy()
            )

        negative_images, negative_texts = reference_negatives(similarity, ids, seed=11)
        pairs = [(b, b, 1) for b in range(len(ids))]
        pairs += [(b, negative_images[b], 0) for b in range(len(ids))]
        pairs += [(negative_texts[b], b, 0) for b in range(len(ids))]
        itm = np.mean([np.log(np.exp(itm_logits(a, b)).sum()) - itm_logits(a, b)[label] for a, b, label in pairs])
        same = (ids[:, None] == ids[None, :]).astype(np.float64)

        def soft_ce(scores: np.ndarray, targets: np.ndarray) -> float:
            log_p = scores - np.log(np.exp(scores).sum(1, keepdims=True))
            return float(-(log_p * targets).sum(1).mean())

        # The original: one-hot targets on the diagonal (pairs 1 and 2, one image, are ITC negatives of each other).
        itc = (soft_ce(similarity, np.eye(len(ids))) + soft_ce(similarity.T, np.eye(len(ids)))) / 2
        shared = same / same.sum(1, keepdims=True)  # same_image_positives=True
        itc_shared = (soft_ce(similarity, shared) + soft_ce(similarity.T, shared)) / 2
        itc_pt, itm_pt = blip_torch.training.retrieval_losses(model, t, np.random.default_rng(11))
        itc_shared_pt, _ = blip_torch.training.retrieval_losses(model, t, 0, same_image_positives=True)
    assert float(itc_shared_pt) == pytest.approx(itc_shared, rel=1e-5) and abs(itc_shared - itc) > 1e-4
    assert all(ids[n] != ids[b] for b, n in enumerate(negative_images))
    assert all(ids[n] != ids[b] for b, n in enumerate(negative_texts))
    assert float(itc_pt) == pytest.approx(itc, rel=1e-5)
    assert float(itm_pt) == pytest.approx(itm, rel=1e-4)
    tf_model = blip_tf.TFBlipForImageTextRetrieval.from_pretrained(folder)
    itc_tf, itm_tf = blip_tf.training.retrieval_losses(
        tf_model, blip_tf.training.to_tensors(batch, tf_model), np.random.default_rng(11)
    )
    assert float(itc_tf) == pytest.approx(itc, rel=1e-4) and float(itm_tf) == pytest.approx(itm, rel=1e-4)


def test_caption_loss_matches_the_numpy_reference(small_models):
    folder = small_models["BlipForConditionalGeneration"]
    batch = examples("caption", BlipProcessor.from_pretrained(folder))
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(folder)
    t = blip_torch.training.to_tensors(batch, model)
    with torch.no_grad():
        logits = model(pixel_values=t["pixel_values"], input_ids=t["input_ids"], attention_mask=t["attention_mask"])
        rows = [
            smoothed_token_losses(row, labels)
            for row, labels in zip(logits.logits.numpy(), batch["labels"], strict=True)
        ]
        expected = sum(r.sum() for r in rows) / int((batch["labels"][:, 1:] != -100).sum())
        smoothed = float(blip_torch.training.caption_loss(model, t))
        plain = float(blip_torch.training.caption_loss(model, t, label_smoothing=0.0))
        own = float(model(**t).loss)  # the config's label_smoothing: 0.0
    assert smoothed == pytest.approx(expected, rel=1e-4)
    assert plain == pytest.approx(own, rel=1e-5)
    assert abs(smoothed - plain) > 1e-3


# ---------------------------------------------------------------------------------------------------------------
# The batches and the sampling.


def test_weighted_vqa_batches(small_models):
    processor = BlipProcessor.from_pretrained(small_models["BlipForQuestionAnswering"])
    original = weighted_vqa_examples(processor, vqa_records(), protocol="original")
    default = weighted_vqa_examples(processor, vqa_records())
    assert original["n"].tolist() == [3, 2, 1]
    np.testing.assert_allclose(original["weights"], [0.7, 0.2, 0.1, 0.6, 0.3, 1.0], rtol=1e-6)
    assert (original["input_ids"][:, 0] == ENC_TOKEN_ID).all() and (default["input_ids"][:, 0] == CLS_TOKEN_ID).all()
    np.testing.assert_array_equal(original["input_ids"][:, 1:], default["input_ids"][:, 1:])
    assert (original["decoder_input_ids"][:, 0] == processor.tokenizer.bos_token_id).all()
    assert processor.batch_decode(original["decoder_input_ids"], skip_special_tokens=True)[:3] == [
        "cat",
        "kitten",
        "tiger",
    ]
    pad = original["decoder_attention_mask"] == 0
    assert pad.any() and (original["labels"][pad] == -100).all()
    with pytest.raises(ValueError, match="record 0: 2 answers and 1 weights"):
        weighted_vqa_examples(processor, [(photos()[0], "what?", ["a", "b"], [1.0])])
    with pytest.raises(ValueError, match="protocol"):
        weighted_vqa_examples(processor, vqa_records(), protocol="paper")
    with pytest.raises(ValueError, match=r"record 0: weights must be finite and >= 0"):
        weighted_vqa_examples(processor, [(photos()[0], "what?", ["a"], [-1.0])])
    with pytest.raises(ValueError, match="at least one record"):
        weighted_vqa_examples(processor, [])
    assert vqa_answer_weights(["two", "two", "2", "two"]) == (["two", "2"], [0.75, 0.25])
    with pytest.raises(ValueError, match="non-empty list"):
        vqa_answer_weights("two")


def test_retrieval_batches_and_bad_counts(small_models):
    processor = BlipProcessor.from_pretrained(small_models["BlipForImageTextRetrieval"])
    original = examples("retrieval", processor)
    default = retrieval_examples(processor, photos(), ["a cat", "an astronaut", "a cup"])
    assert (original["input_ids"][:, 0] == CLS_TOKEN_ID).all() and (
        original["itm_input_ids"][:, 0] == ENC_TOKEN_ID
    ).all()
    np.testing.assert_array_equal(default["itm_input_ids"], default["input_ids"])
    assert original["image_ids"].tolist() == [7, 3, 3, 9] and default["image_ids"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="image_ids must be 3 integers"):
        retrieval_examples(processor, photos(), ["a", "b", "c"], image_ids=[0, 1])
    one_image = retrieval_examples(processor, photos()[:2], ["a cat", "a cat again"], image_ids=[4, 4])
    for framework, model_class in ((blip_torch, "BlipForImageTextRetrieval"), (blip_tf, "TFBlipForImageTextRetrieval")):
        model = getattr(framework, model_class).from_pretrained(small_models["BlipForImageTextRetrieval"])
        with pytest.raises(ValueError, match="pair 0 has none"):
            framework.training.retrieval_losses(model, framework.training.to_tensors(one_image, model), 0)
    batch = weighted_vqa_examples(processor, vqa_records())
    without_n = {key: value for key, value in batch.items() if key != "n"}
    for framework, model_class in ((blip_torch, "BlipForQuestionAnswering"), (blip_tf, "TFBlipForQuestionAnswering")):
        model = getattr(framework, model_class).from_pretrained(small_models["BlipForQuestionAnswering"])
        with pytest.raises(ValueError, match=r"lacks \['n'\]: build it with blip_core.training.weighted_vqa_examples"):
            framework.training.batch_loss(model, framework.training.to_tensors(without_n, model))
    batch["n"] = np.array([3, 2, 2])
    torch_model = blip_torch.BlipForQuestionAnswering.from_pretrained(small_models["BlipForQuestionAnswering"])
    tf_model = blip_tf.TFBlipForQuestionAnswering.from_pretrained(small_models["BlipForQuestionAnswering"])
    with pytest.raises(ValueError, match=r"n must give each of the 3 questions >= 1 answers, summing to the 6"):
        blip_torch.training.weighted_vqa_loss(torch_model, blip_torch.training.to_tensors(batch, torch_model))
    with pytest.raises(ValueError, match=r"n must give each of the 3 questions >= 1 answers, summing to the 6"):
        blip_tf.training.weighted_vqa_loss(tf_model, blip_tf.training.to_tensors(batch, tf_model))


def test_contrastive_targets():
    from blip_core.training.paper import contrastive_targets

    ids = np.array([7, 3, 3, 9])
    np.testing.assert_array_equal(contrastive_targets(ids), np.eye(4, dtype=np.float32))  # the original's
    shared = contrastive_targets(ids, same_image_positives=True)
    np.testing.assert_allclose(shared[1], [0, 0.5, 0.5, 0])
    np.testing.assert_allclose(shared[3], [0, 0, 0, 1])


def test_hard_negatives_follow_the_masked_softmax():
    from blip_core.training import sample_hard_negatives

    similarity = np.array([[3.0, 1.0, 0.0, 2.0], [0.5, 3.0, 1.5, 0.0], [1.0, 1.0, 3.0, -1.0], [0.0, 2.0, 1.0, 3.0]])
    ids = np.array([0, 1, 2, 0])  # pairs 0 and 3 show the same image: never each other's negative
    rng = np.random.default_rng(0)
    counts = np.zeros((2, 4, 4))
    for _ in range(4000):
        images, texts = sample_hard_negatives(similarity, ids, rng)
        counts[0, np.arange(4), images] += 1
        counts[1, np.arange(4), texts] += 1
    for kind, scores in enumerate((similarity.T, similarity)):
        p = np.exp(scores) * (ids[:, None] != ids[None, :])
        np.testing.assert_allclose(counts[kind] / 4000, p / p.sum(1, keepdims=True), atol=0.03)
    with pytest.raises(ValueError, match="at least two different images"):
        sample_hard_negatives(similarity, np.zeros(4, np.int64), rng)
    first = sample_hard_negatives(similarity, ids, np.random.default_rng(4))
    np.testing.assert_array_equal(first, sample_hard_negatives(similarity, ids, np.random.default_rng(4)))


def evaluated(framework, model, batch) -> float:
    """The batch's loss with the negatives of one fixed seed, so that two evaluations compare like with like."""
    tensors = framework.to_tensors(batch, model)
    if framework is blip_torch.training:
        with torch.no_grad():
            return float(framework.batch_loss(model, tensors, np.random.default_rng(123)))
    return float(framework.batch_loss(model, tensors, False, np.random.default_rng(123)))


@pytest.mark.parametrize("task", ["vqa", "retrieval"])
def test_a_short_run_lowers_the_loss_in_both_trees(small_models, task):
    folder = small_models[CLASSES[task]]
    batch = examples(task, BlipProcessor.from_pretrained(folder))
    torch_model = getattr(blip_torch, CLASSES[task]).from_pretrained(folder)
    tf_model = getattr(blip_tf, "TF" + CLASSES[task]).from_pretrained(folder)
    for framework, model in ((blip_torch.training, torch_model), (blip_tf.training, tf_model)):
        before = evaluated(framework, model, batch)
        losses = framework.train(model, [batch] * 10, learning_rate=2e-3, seed=1)
        after = evaluated(framework, model, batch)
        assert len(losses) == 10 and after < 0.93 * before, (framework.__name__, before, after, losses)
