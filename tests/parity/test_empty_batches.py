"""Empty batches (0 images and/or 0 texts) in both trees: outputs with the structure of a non-empty call and 0 rows,
or the same ValueError; never a framework kernel on an empty batch (Keras' Conv2D fails on AVX-512 CPUs)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch

import blip_tf
import blip_torch
from blip_core import BlipProcessor
from blip_core.demo.synthetic import samples
from blip_core.training import itm_examples
from tests.helpers.compare import assert_outputs_close, flatten
from tests.helpers.golden import load_json, load_npz
from tests.helpers.limit_cases import CASES as LIMIT_CASES

RNG = np.random.RandomState(5)
PX = RNG.randn(2, 3, 40, 40).astype(np.float32)
IDS = RNG.randint(4, 90, size=(2, 7)).astype(np.int64)
HIDDEN = RNG.randn(2, 26, 24).astype(np.float32)
FLAGS = {"output_attentions": True, "output_hidden_states": True}
_LOADED: dict[str, tuple] = {}


def models(tiny_checkpoints, class_name):
    if class_name not in _LOADED:
        folder = tiny_checkpoints[class_name]
        _LOADED[class_name] = (
            getattr(blip_torch, class_name).from_pretrained(folder),
            getattr(blip_tf, "TF" + class_name).from_pretrained(folder),
        )
    return _LOADED[class_name]


def call(model, framework, method, arrays, kwargs):
    target = model if method == "forward" else getattr(model, method)
    if framework == "torch":
        with torch.no_grad():
            return target(**{k: torch.from_numpy(v.copy()) for k, v in arrays.items()}, **kwargs)
    return target(**{k: tf.constant(v) for k, v in arrays.items()}, **kwargs)


def as_flat(value) -> dict:
    return flatten(value if isinstance(value, dict) else {"": value})


# (name, class, method, inputs with 0 rows somewhere, kwargs)
CASES = [
    ("vision", "BlipVisionModel", "forward", {"pixel_values": PX[:0]}, FLAGS),
    ("vision_plain", "BlipVisionModel", "forward", {"pixel_values": PX[:0]}, {}),
    (
        "vision_interpolated",
        "BlipVisionModel",
        "forward",
        {"pixel_values": np.zeros((0, 3, 56, 48), np.float32)},
        {"interpolate_pos_encoding": True, **FLAGS},
    ),
    ("text", "BlipTextModel", "forward", {"input_ids": IDS[:0], "attention_mask": np.ones((0, 7), np.int64)}, FLAGS),
    ("text_cross", "BlipTextModel", "forward", {"input_ids": IDS[:0], "encoder_hidden_states": HIDDEN[:0]}, FLAGS),
    ("text_decoder_cache", "BlipTextModel", "forward", {"input_ids": IDS[:0]}, {"is_decoder": True, "use_cache": True}),
    ("lm_head", "BlipTextLMHeadModel", "forward", {"input_ids": IDS[:0], "encoder_hidden_states": HIDDEN[:0]}, FLAGS),
    ("lm_head_logits", "BlipTextLMHeadModel", "forward", {"input_ids": IDS[:0]}, {"return_logits": True}),
    ("blip_both", "BlipModel", "forward", {"input_ids": IDS[:0], "pixel_values": PX[:0]}, FLAGS),
    ("blip_no_images", "BlipModel", "forward", {"input_ids": IDS, "pixel_values": PX[:0]}, {}),
    ("blip_no_texts", "BlipModel", "forward", {"input_ids": IDS[:0], "pixel_values": PX}, {}),
    ("blip_text_features", "BlipModel", "get_text_features", {"input_ids": IDS[:0]}, {}),
    ("blip_image_features", "BlipModel", "get_image_features", {"pixel_values": PX[:0]}, {}),
    ("blip_multimodal", "BlipModel", "get_multimodal_features", {"input_ids": IDS[:0], "pixel_values": PX[:0]}, {}),
    ("caption", "BlipForConditionalGeneration", "forward", {"pixel_values": PX[:0], "input_ids": IDS[:0]}, FLAGS),
    ("itm", "BlipForImageTextRetrieval", "forward", {"input_ids": IDS[:0], "pixel_values": PX[:0]}, FLAGS),
    ("itm_one_image", "BlipForImageTextRetrieval", "forward", {"input_ids": IDS[:0], "pixel_values": PX[:1]}, {}),
    (
        "itc_no_images",
        "BlipForImageTextRetrieval",
        "forward",
        {"input_ids": IDS, "pixel_values": PX[:0]},
        {"use_itm_head": False},
    ),
    (
        "itc_no_texts",
        "BlipForImageTextRetrieval",
        "forward",
        {"input_ids": IDS[:0], "pixel_values": PX},
        {"use_itm_head": False},
    ),
    (
        "vqa",
        "BlipForQuestionAnswering",
        "forward",
        {"input_ids": IDS[:0], "pixel_values": PX[:0], "decoder_input_ids": IDS[:0, :4]},
        FLAGS,
    ),
]


def one_row(arrays: dict) -> dict:
    """The same inputs with one row wherever the case has none: what a non-empty call returns."""
    return {key: value if len(value) else np.zeros((1, *value.shape[1:]), value.dtype) for key, value in arrays.items()}


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_empty_batch_gives_empty_outputs_in_both_trees(tiny_checkpoints, case):
    _, class_name, method, arrays, kwargs = case
    torch_model, tf_model = models(tiny_checkpoints, class_name)
    expected = as_flat(call(torch_model, "torch", method, arrays, kwargs))
    actual = as_flat(call(tf_model, "tf", method, arrays, kwargs))
    assert expected and set(actual) == set(expected)
    assert_outputs_close(actual, expected)  # shapes equal; values where any rows exist
    assert any(0 in value.shape for value in expected.values())
    for framework, model, outputs in (("torch", torch_model, expected), ("tf", tf_model, actual)):
        reference = as_flat(call(model, framework, method, one_row(arrays), kwargs))
        assert set(reference) == set(outputs), "an empty batch must return the fields a non-empty call returns"
        for key, value in outputs.items():
            pairs = zip(value.shape, reference[key].shape, strict=True)  # same rank; sizes equal or 0 rows
            assert all(a == b or a == 0 for a, b in pairs) and value.dtype == reference[key].dtype, key


def test_empty_decoder_call_returns_a_usable_cache(tiny_checkpoints):
    for framework, model in zip(("torch", "tf"), models(tiny_checkpoints, "BlipTextLMHeadModel"), strict=True):
        out = call(model, framework, "forward", {"input_ids": IDS[:0, :3]}, {"use_cache": True})
        cache = out.past_key_values
        assert cache.length == 3 and tuple(cache.self_entries[1][0].shape) == (0, 4, 3, 5)
        nxt = call(model, framework, "forward", {"input_ids": IDS[:0, :1]}, {"past_key_values": cache})
        assert tuple(nxt.logits.shape) == (0, 1, 99) and nxt.past_key_values.length == 4


@pytest.mark.parametrize(
    "class_name,method,arrays,kwargs,message",
    [
        ("BlipTextLMHeadModel", "forward", {"input_ids": IDS[:0], "labels": IDS[:0]}, {}, "language-modelling loss"),
        (
            "BlipForConditionalGeneration",
            "forward",
            {"pixel_values": PX[:0], "input_ids": IDS[:0], "labels": IDS[:0]},
            {},
            "language-modelling loss",
        ),
        (
            "BlipForQuestionAnswering",
            "forward",
            {"input_ids": IDS[:0], "pixel_values": PX[:0], "labels": IDS[:0, :4]},
            {},
            "language-modelling loss",
        ),
        ("BlipModel", "forward", {"input_ids": IDS, "pixel_values": PX[:0]}, {"return_loss": True}, "contrastive loss"),
        ("BlipModel", "forward", {"input_ids": IDS[:0], "pixel_values": PX[:0]}, {"return_loss": True}, "contrastive"),
        ("BlipForConditionalGeneration", "forward", {"pixel_values": PX[:0], "input_ids": IDS}, {}, "0 images and 2"),
        ("BlipForImageTextRetrieval", "forward", {"input_ids": IDS[:0], "pixel_values": PX}, {}, "2 images and 0"),
        ("BlipVisionModel", "forward", {"pixel_values": np.zeros((0, 3, 48, 48), np.float32)}, {}, "interpolate"),
        ("BlipTextModel", "forward", {"input_ids": IDS[:0].astype(np.float32)}, {}, "must be integers"),
    ],
)
def test_empty_batch_errors_are_the_same_in_both_trees(tiny_checkpoints, class_name, method, arrays, kwargs, message):
    texts = []
    for framework, model in zip(("torch", "tf"), models(tiny_checkpoints, class_name), strict=True):
        with pytest.raises((ValueError, TypeError), match=message) as info:
            call(model, framework, method, arrays, kwargs)
        texts.append(str(info.value))
    assert texts[0] in texts[1]  # Keras adds "Exception encountered when calling ..." around the same message


def test_a_graph_with_unknown_batch_size_handles_zero_images(tiny_checkpoints):
    """Inside a graph the batch size is not known in Python; the patch convolution must still never see 0 images."""
    _, tf_model = models(tiny_checkpoints, "BlipVisionModel")
    encode = tf.function(
        lambda pixels: tf_model(pixels).last_hidden_state, input_signature=[tf.TensorSpec((None, 3, 40, 40))]
    )
    assert tuple(encode(tf.zeros((0, 3, 40, 40))).shape) == (0, 26, 24)
    assert_outputs_close(encode(tf.constant(PX)).numpy(), tf_model(tf.constant(PX)).last_hidden_state.numpy())


def test_itm_objective_without_matched_pairs_is_the_same_in_both_trees(small_models):
    """No matched pair: the ITM cross-entropy alone (no ITC term), equal in both trees; 0 rows: the same error."""
    from blip_tf import training as tf_training
    from blip_torch import training as torch_training

    folder = small_models["BlipForImageTextRetrieval"]
    pairs = samples(7, 0, 3)
    batch = itm_examples(BlipProcessor.from_pretrained(folder), [i for i, _ in pairs], [s.caption for _, s in pairs])
    unmatched = {key: value[3:] for key, value in batch.items()}
    assert not unmatched["match"].any()
    losses = []
    for model, training, extra in (
        (blip_torch.BlipForImageTextRetrieval.from_pretrained(folder), torch_training, ()),
        (blip_tf.TFBlipForImageTextRetrieval.from_pretrained(folder), tf_training, (False,)),
    ):
        data = training.to_tensors(unmatched, model)
        inputs = {key: value for key, value in data.items() if key != "match"}
        with torch.no_grad():
            scores = model(**inputs, use_itm_head=True).itm_score
            losses.append(float(training.itm_objective(model, inputs, data["match"], scores, *extra)))
        logits = np.asarray(scores, np.float64)
        expected = np.mean(np.log(np.exp(logits).sum(-1)) - logits[:, 0])  # cross-entropy against "no match"
        assert losses[-1] == pytest.approx(expected, abs=1e-5)
        empty = {key: value[:0] for key, value in inputs.items()}
        with pytest.raises(ValueError, match="image-text matching loss was asked for an empty batch"):
            training.itm_objective(model, empty, data["match"][:0], scores[:0], *extra)
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)


@pytest.mark.slow  # a Keras fit; the objective itself is tested in tests/tf/test_fit_helpers.py
def test_keras_fit_on_batches_without_matched_pairs(small_models):
    """Keras traces the loss: batches without a matched pair must skip the contrastive term inside the graph."""
    import keras

    folder = small_models["BlipForImageTextRetrieval"]
    pairs = samples(7, 0, 4)
    batch = itm_examples(BlipProcessor.from_pretrained(folder), [i for i, _ in pairs], [s.caption for _, s in pairs])
    order = np.array([4, 5, 0, 1, 6, 7, 2, 3])  # batches of 2: unmatched, matched, unmatched, matched
    features = {key: value[order] for key, value in batch.items() if key != "match"}
    dataset = tf.data.Dataset.from_tensor_slices((features, batch["match"][order])).batch(2)
    model = blip_tf.TFBlipForImageTextRetrieval.from_pretrained(folder)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-3))
    history = model.fit(dataset, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


GOLDEN = load_json("limits.json")
GOLDEN_ARRAYS = load_npz("limits.npz")


@pytest.mark.parametrize("name", sorted(name for name in LIMIT_CASES if "shapes" in GOLDEN[name]))
def test_where_transformers_handles_an_empty_side_both_trees_give_its_outputs(tiny_checkpoints, name):
    """transformers runs an empty image batch (torch's Conv2d accepts it): same shapes, same values of the texts."""
    class_name, arrays, kwargs = LIMIT_CASES[name]
    kwargs = dict(kwargs)
    method = kwargs.pop("method", "forward")
    for framework, model in zip(("torch", "tf"), models(tiny_checkpoints, class_name), strict=True):
        flat = as_flat(call(model, framework, method, arrays, kwargs))
        assert {key: list(value.shape) for key, value in flat.items()} == GOLDEN[name]["shapes"], framework
        expected = {key.split("::", 1)[1]: value for key, value in GOLDEN_ARRAYS.items() if key.startswith(name + "::")}
        assert_outputs_close(flat, expected, only=set(expected))


@pytest.mark.parametrize("name", sorted(name for name in LIMIT_CASES if "raises" in GOLDEN[name]))
def test_where_transformers_crashes_both_trees_answer(tiny_checkpoints, name):
    """transformers raises a kernel's RuntimeError/IndexError; here an empty batch gives empty outputs and an
    input beyond the model a ValueError naming the limit, the same in both trees."""
    class_name, arrays, kwargs = LIMIT_CASES[name]
    assert GOLDEN[name]["raises"] in ("RuntimeError", "IndexError")
    results = []
    for framework, model in zip(("torch", "tf"), models(tiny_checkpoints, class_name), strict=True):
        try:
            outputs = as_flat(call(model, framework, "forward", arrays, kwargs))
            results.append({key: value.shape for key, value in outputs.items()})
        except ValueError as err:
            results.append(str(err))
    if isinstance(results[0], str):
        assert "max_position_embeddings" in results[0] or "must lie in" in results[0]
        assert results[0] in results[1]
    else:
        assert results[0] == results[1] and all(0 in shape for shape in results[0].values())
