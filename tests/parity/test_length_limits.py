"""The text stacks' limits (`blip_core.modeling.limits`): every bad input gets the same clear error in both trees,
before any kernel (an IndexError or a TensorFlow gather error otherwise); inside a TF graph, the static checks."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch

import blip_tf
import blip_torch
from tests.helpers.compare import assert_outputs_close, flatten

RNG = np.random.RandomState(11)
PX = RNG.randn(2, 3, 40, 40).astype(np.float32)
LIMIT = 48  # max_position_embeddings of the tiny text config
_LOADED: dict[str, tuple] = {}


def ids(rows: int, length: int) -> np.ndarray:
    return RNG.randint(4, 90, size=(rows, length)).astype(np.int64)


def models(tiny_checkpoints, class_name):
    if class_name not in _LOADED:
        folder = tiny_checkpoints[class_name]
        _LOADED[class_name] = (
            getattr(blip_torch, class_name).from_pretrained(folder),
            getattr(blip_tf, "TF" + class_name).from_pretrained(folder),
        )
    return _LOADED[class_name]


def run(model, framework, arrays, kwargs):
    if framework == "torch":
        with torch.no_grad():
            return model(**{k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}, **kwargs)
    return model(**{k: tf.constant(v) for k, v in arrays.items()}, **kwargs)


CASES = [
    ("id_too_large", "BlipTextModel", {"input_ids": [[1, 500]]}, {}, ValueError, r"in \[0, 99\).*from 1 to 500"),
    ("negative_id", "BlipTextModel", {"input_ids": [[-3, 5]]}, {}, ValueError, r"got values from -3 to 5"),
    ("float_ids", "BlipTextModel", {"input_ids": np.ones((1, 3), np.float32)}, {}, TypeError, "got float32"),
    ("bool_ids", "BlipTextModel", {"input_ids": np.ones((1, 3), bool)}, {}, TypeError, "must be integers, got bool"),
    ("one_dim_ids", "BlipTextModel", {"input_ids": [5, 6, 7]}, {}, ValueError, r"shape \(batch, length\), got \(3,\)"),
    ("no_tokens", "BlipTextModel", {"input_ids": np.zeros((2, 0), np.int64)}, {}, ValueError, "has no tokens"),
    (
        "too_long",
        "BlipTextModel",
        {"input_ids": ids(1, LIMIT + 1)},
        {},
        ValueError,
        r"input_ids has 49 tokens: a sequence of 49 tokens exceeds max_position_embeddings \(48\)",
    ),
    (
        "embeds_too_long",
        "BlipTextModel",
        {"inputs_embeds": np.zeros((1, LIMIT + 2, 20), np.float32)},
        {},
        ValueError,
        "inputs_embeds has 50 tokens",
    ),
    (
        "position_ids_beyond_table",
        "BlipTextModel",
        {"input_ids": ids(1, 5), "position_ids": [[44, 45, 46, 47, 48]]},
        {},
        ValueError,
        r"position_ids must lie in \[0, 48\) \(max_position_embeddings\), got values from 44 to 48",
    ),
    (
        "float_position_ids",
        "BlipTextModel",
        {"input_ids": ids(1, 2), "position_ids": np.zeros((1, 2), np.float32)},
        {},
        TypeError,
        "position_ids must be integers",
    ),
    (
        "labels_out_of_vocabulary",
        "BlipTextLMHeadModel",
        {"input_ids": ids(1, 4), "labels": [[-100, 5, 200, 3]]},
        {},
        ValueError,
        r"labels \(other than -100\) must lie in \[0, 99\).*from 3 to 200",
    ),
    (
        "float_labels",
        "BlipTextLMHeadModel",
        {"input_ids": ids(1, 4), "labels": np.zeros((1, 4), np.float32)},
        {},
        TypeError,
        "labels must be integers, got float32",
    ),
    (
        "vqa_question_too_long",
        "BlipForQuestionAnswering",
        {"input_ids": ids(2, 60), "pixel_values": PX, "decoder_input_ids": ids(2, 3)},
        {},
        ValueError,
        "input_ids has 60 tokens",
    ),
    (
        "vqa_answer_out_of_vocabulary",
        "BlipForQuestionAnswering",
        {"input_ids": ids(2, 6), "pixel_values": PX, "decoder_input_ids": [[97, 120], [97, 5]]},
        {},
        ValueError,
        "from 5 to 120",
    ),
    (
        "vqa_answers_do_not_match_questions",
        "BlipForQuestionAnswering",
        {"input_ids": ids(2, 6), "pixel_values": PX, "decoder_input_ids": ids(3, 4)},
        {},
        ValueError,
        "got 2 questions and 3 answers",
    ),
    (
        "itm_text_too_long",
        "BlipForImageTextRetrieval",
        {"input_ids": ids(2, 50), "pixel_values": PX},
        {},
        ValueError,
        "input_ids has 50 tokens",
    ),
    (
        "itc_text_too_long",
        "BlipForImageTextRetrieval",
        {"input_ids": ids(2, 50), "pixel_values": PX},
        {"use_itm_head": False},
        ValueError,
        "input_ids has 50 tokens",
    ),
    (
        "caption_too_long",
        "BlipForConditionalGeneration",
        {"pixel_values": PX, "input_ids": ids(2, 49)},
        {},
        ValueError,
        "exceeds max_position_embeddings",
    ),
    (
        "blip_text_too_long",
        "BlipModel",
        {"input_ids": ids(2, 49), "pixel_values": PX},
        {},
        ValueError,
        "exceeds max_position_embeddings",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_the_same_clear_error_in_both_trees(tiny_checkpoints, case):
    _, class_name, arrays, kwargs, error, message = case
    texts = []
    for framework, model in zip(("torch", "tf"), models(tiny_checkpoints, class_name), strict=True):
        with pytest.raises(error, match=message) as info:
            run(model, framework, arrays, kwargs)
        texts.append(str(info.value))
    assert texts[0] in texts[1]  # Keras adds "Exception encountered when calling ..." around the same message


def test_a_cache_counts_towards_the_position_table(tiny_checkpoints):
    texts = []
    for framework, model in zip(("torch", "tf"), models(tiny_checkpoints, "BlipTextLMHeadModel"), strict=True):
        cache = run(model, framework, {"input_ids": ids(1, 40)}, {"use_cache": True}).past_key_values
        run(model, framework, {"input_ids": ids(1, 8)}, {"past_key_values": cache})  # 48 positions: fits
        with pytest.raises(ValueError, match="input_ids has 1 tokens after 48 cached tokens") as info:
            run(model, framework, {"input_ids": ids(1, 1)}, {"past_key_values": cache})
        texts.append(str(info.value))
    assert texts[0] in texts[1]


def test_explicit_positions_inside_the_table_run_the_same_in_both_trees(tiny_checkpoints):
    """Positions in range are fine, even for a sequence longer than the table (as in `transformers`)."""
    positions = np.tile(np.arange(30), 2)[None, :55]
    arrays = {"input_ids": ids(1, 55), "position_ids": positions}
    torch_model, tf_model = models(tiny_checkpoints, "BlipTextModel")
    expected = flatten(dict(run(torch_model, "torch", arrays, {})))
    assert_outputs_close(flatten(dict(run(tf_model, "tf", arrays, {}))), expected)


def test_inside_a_graph_static_facts_are_still_checked(tiny_checkpoints):
    """In a tf.function only the dtype and a static length are known: those are checked while tracing;
    id values are not (TensorFlow's gather reports them at run time)."""
    _, tf_model = models(tiny_checkpoints, "BlipTextModel")
    static = tf.function(lambda x: tf_model(x).last_hidden_state, input_signature=[tf.TensorSpec((1, 49), tf.int64)])
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        static.get_concrete_function()
    floats = tf.function(lambda x: tf_model(x).last_hidden_state, input_signature=[tf.TensorSpec((1, 3), tf.float32)])
    with pytest.raises(TypeError, match="must be integers"):
        floats.get_concrete_function()
    spec = tf.TensorSpec((None, None), tf.int64)
    dynamic = tf.function(lambda x: tf_model(x).last_hidden_state, input_signature=[spec])
    assert dynamic(tf.constant(ids(2, 5))).shape == (2, 5, 20)
