"""Weight-name maps: REFERENCE §2.2 counts, ties, prefixes, one error listing every problem."""

from __future__ import annotations

import numpy as np
import pytest

from blip_core import BlipConfig
from blip_core.checkpoints.safetensors_io import write_safetensors
from blip_core.checkpoints.sources import open_file
from blip_core.weights import CheckpointError, expected_params, prepare_state, saved_names
from blip_core.weights.layouts import from_keras, shape_to_keras, to_keras
from tests.helpers.tiny import seeded_weights, sub_config, tiny_config

HUB_BASE = BlipConfig(text_config={"num_attention_heads": 12})
HUB_LARGE = BlipConfig(
    text_config={"num_attention_heads": 12},
    vision_config={"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16},
)

# (class, state_dict keys, unique parameter count) from REFERENCE §2.2, base sizes.
REFERENCE_COUNTS = [
    ("BlipVisionModel", 150, 86_090_496),
    ("BlipTextModel", 318, 137_849_088),
    # transformers builds a standalone LM head untied (it ties on load), so its count has one more V x H matrix.
    ("BlipTextLMHeadModel", 323, 161_323_580 - 30524 * 768),
    ("BlipModel", 471, 224_726_017),
    ("BlipForConditionalGeneration", 473, 223_971_644),
    ("BlipForQuestionAnswering", 789, 361_230_140),
    ("BlipForImageTextRetrieval", 472, 223_744_258),
]


def unique_count(class_name, config):
    specs = expected_params(class_name, sub_config(class_name, config))
    tied = set(specs_names(specs)) - set(saved_names(specs_names(specs), class_name, sub_config(class_name, config)))
    return sum(int(np.prod(s.shape)) for s in specs if s.name not in tied)


def specs_names(specs):
    return [s.name for s in specs]


@pytest.mark.parametrize("class_name,keys,params", REFERENCE_COUNTS, ids=[c[0] for c in REFERENCE_COUNTS])
def test_reference_counts(class_name, keys, params):
    specs = expected_params(class_name, sub_config(class_name, HUB_BASE))
    assert len(specs) == keys
    assert unique_count(class_name, HUB_BASE) == params


@pytest.mark.parametrize(
    "class_name,params",
    [
        ("BlipForConditionalGeneration", 446_290_492),
        ("BlipForQuestionAnswering", 588_267_580),
        ("BlipForImageTextRetrieval", 446_128_642),
    ],
)
def test_reference_counts_large(class_name, params):
    assert unique_count(class_name, HUB_LARGE) == params


def test_saved_names_drop_tied_aliases():
    names = specs_names(expected_params("BlipForConditionalGeneration", HUB_BASE))
    saved = saved_names(names, "BlipForConditionalGeneration", HUB_BASE)
    assert len(saved) == 471
    kept = saved_names(
        names,
        "BlipForConditionalGeneration",
        HUB_BASE,
        untied=frozenset({"text_decoder.cls.predictions.decoder.weight"}),
    )
    assert len(kept) == 472


def _write(tmp_path, tensors, name="model.safetensors"):
    write_safetensors(tmp_path / name, tensors)
    return open_file(tmp_path / name)


def test_tied_decoder_absent_equal_or_different(tmp_path):
    config = tiny_config()
    weights = seeded_weights("BlipForConditionalGeneration", config)
    alias, bias_alias = "text_decoder.cls.predictions.decoder.weight", "text_decoder.cls.predictions.decoder.bias"
    absent = {k: v for k, v in weights.items() if k not in (alias, bias_alias)}
    state = prepare_state(_write(tmp_path, absent, "a.safetensors"), "BlipForConditionalGeneration", config)
    assert {p.alias for p in state.tied} == {alias, bias_alias} and not state.untied
    assert alias not in state.names
    state = prepare_state(_write(tmp_path, weights, "b.safetensors"), "BlipForConditionalGeneration", config)
    assert {p.alias for p in state.tied} == {alias, bias_alias}
    drifted = dict(weights)
    drifted[alias] = weights[alias] + 0.01
    state = prepare_state(_write(tmp_path, drifted, "c.safetensors"), "BlipForConditionalGeneration", config)
    assert state.untied == frozenset({alias}) and alias in state.names
    assert np.array_equal(state.get(alias), drifted[alias])


def test_vision_model_taken_from_a_captioning_checkpoint(tmp_path):
    config = tiny_config()
    weights = seeded_weights("BlipForConditionalGeneration", config)
    state = prepare_state(_write(tmp_path, weights), "BlipVisionModel", config.vision_config)
    assert state.prefix == "vision_model."
    name = "encoder.layers.1.mlp.fc2.weight"
    assert np.array_equal(state.get(name), weights["vision_model." + name])


def test_text_model_taken_from_blip_model(tmp_path):
    config = tiny_config()
    weights = seeded_weights("BlipModel", config)
    state = prepare_state(_write(tmp_path, weights), "BlipTextModel", config.text_config)
    assert state.prefix == "text_model." and "pooler.dense.weight" in state.names


def test_position_ids_are_ignored(tmp_path):
    config = tiny_config()
    weights = seeded_weights("BlipTextLMHeadModel", config.text_config)
    weights["bert.embeddings.position_ids"] = np.arange(48, dtype=np.int64)[None]
    prepare_state(_write(tmp_path, weights), "BlipTextLMHeadModel", config.text_config)


def test_one_error_lists_every_problem(tmp_path):
    config = tiny_config()
    weights = seeded_weights("BlipForImageTextRetrieval", config)
    del weights["itm_head.weight"], weights["text_proj.bias"]
    weights["extra.thing"] = np.zeros(3, np.float32)
    weights["vision_model.embeddings.position_embedding"] = np.zeros((1, 30, 24), np.float32)
    with pytest.raises(CheckpointError) as info:
        prepare_state(_write(tmp_path, weights), "BlipForImageTextRetrieval", config)
    message = str(info.value)
    assert "missing (2):" in message and "itm_head.weight" in message and "text_proj.bias" in message
    assert "unexpected (1):" in message and "extra.thing" in message
    assert "wrong shape (1):" in message and "file (1, 30, 24), model (1, 26, 24)" in message


def test_wrong_class_is_reported_not_half_loaded(tmp_path):
    config = tiny_config()
    weights = seeded_weights("BlipForConditionalGeneration", config)
    with pytest.raises(CheckpointError, match="does not fit BlipModel"):
        prepare_state(_write(tmp_path, weights), "BlipModel", config)


@pytest.mark.parametrize(
    "kind,shape",
    [("linear", (5, 3)), ("conv2d", (8, 3, 4, 4)), ("norm", (5,)), ("embedding", (7, 5)), ("raw", (1, 1, 5))],
)
def test_layouts_round_trip(kind, shape):
    array = np.random.RandomState(0).randn(*shape).astype(np.float32)
    keras = to_keras(array, kind, "weight")
    assert keras.shape == shape_to_keras(shape, kind, "weight")
    assert np.array_equal(from_keras(keras, kind, "weight"), array)
