"""`GenerationConfig` and the configs' generation fields, against `transformers` 4.57.6 (golden facts),
and the option rules of `blip_core.generation.options` (no framework needed)."""

from __future__ import annotations

import json

import pytest

from blip_core import BlipConfig, BlipTextConfig, GenerationConfig
from blip_core.config.configuration import GENERATION_DEFAULTS
from blip_core.generation.options import GenerationOptions
from blip_core.generation.rules import GenerationArgumentError
from tests.helpers.golden import load_json

FACTS = load_json("generation.json")


def test_text_config_has_the_legacy_generation_fields():
    text = BlipTextConfig()
    assert {name: getattr(text, name) for name in GENERATION_DEFAULTS} == FACTS["text_config_generation_fields"]
    assert {name: getattr(BlipConfig(), name) for name in GENERATION_DEFAULTS} == FACTS["blip_config_generation_fields"]
    with pytest.raises(AttributeError, match="no attribute 'brand_new_field'"):
        _ = text.brand_new_field


def test_config_update_diff_and_non_default_fields():
    text = BlipTextConfig()
    text.num_beams, text.max_length = 5, 40
    assert {k: text.to_diff_dict()[k] for k in ("num_beams", "max_length")} == FACTS["text_config_diff_after_set"]
    assert text._get_non_default_generation_parameters() == FACTS["non_default_generation_parameters"]
    assert "num_beams" not in BlipTextConfig().to_diff_dict()  # defaults stay out of config.json
    config = BlipConfig()
    config.update({"projection_dim": 7, "brand_new_key": 3})
    assert {"projection_dim": config.projection_dim, "brand_new_key": config.brand_new_key} == FACTS[
        "blip_config_after_update"
    ]
    assert config == BlipConfig.from_dict(config.to_dict()) and config != BlipConfig()
    assert config.get_text_config() is config.text_config and text.get_text_config() is text


def _made() -> dict[str, GenerationConfig]:
    return {
        "beam3_new30_custom": GenerationConfig(num_beams=3, max_new_tokens=30, custom_key=[1, 2]),
        "sequence_bias": GenerationConfig(sequence_bias={(1, 2): 0.5}, bad_words_ids=[[4], [5, 6]]),
        "from_text_config": GenerationConfig.from_model_config(BlipTextConfig(bos_token_id=97, num_beams=4)),
        "from_blip_config": GenerationConfig.from_model_config(BlipConfig(text_config={"max_length": 9})),
        "output_flags": GenerationConfig.from_model_config(BlipTextConfig(output_scores=True)),
    }


@pytest.mark.parametrize("name", sorted(FACTS["generation_config_json"]))
def test_generation_config_json_matches_transformers(name):
    assert _made()[name].to_json_string() == FACTS["generation_config_json"][name]


def test_generation_config_fields_and_round_trips(tmp_path):
    assert sorted(GenerationConfig().to_dict()) == FACTS["generation_config_full_dict_keys"]
    config = GenerationConfig(num_beams=3, no_repeat_ngram_size=2, custom_key="kept")
    path = config.save_pretrained(tmp_path)
    again = GenerationConfig.from_pretrained(tmp_path)
    assert path.name == "generation_config.json" and again == config and again.custom_key == "kept"
    loaded, unused = GenerationConfig.from_pretrained(tmp_path, top_k=3, brand_new=1, return_unused_kwargs=True)
    assert loaded.top_k == 3 and unused == {}
    assert (
        GenerationConfig.from_dict({"num_beams": 2}, top_k=3, return_unused_kwargs=True)[1] == FACTS["from_dict_unused"]
    )
    assert (GenerationConfig(num_beams=2) == GenerationConfig(num_beams=2, transformers_version="4.0.0")) is FACTS[
        "equal_ignoring_metadata"
    ]
    assert config.update(num_beams=4, not_a_field=1) == {"not_a_field": 1} and config.num_beams == 4
    assert hash(GenerationConfig(num_beams=2)) == hash(GenerationConfig(num_beams=2))


def test_generation_config_refusals():
    with pytest.raises(ValueError, match="`early_stopping` must be a boolean or 'never'"):
        GenerationConfig(early_stopping="sometimes")
    with pytest.raises(ValueError, match="do not support `num_return_sequences`"):
        GenerationConfig(num_return_sequences=2)
    with pytest.raises(ValueError, match="`num_beams` should be divisible by `num_beam_groups`"):
        GenerationConfig(num_beams=4, num_beam_groups=3, diversity_penalty=1.0)
    with pytest.raises(ValueError, match="should be passed to `generate\\(\\)`"):
        GenerationConfig(streamer=object())
    with pytest.raises(ValueError, match="Fix these issues to save"):
        GenerationConfig(temperature=0.5).save_pretrained("unused")
    with pytest.raises(OSError, match="nonexistent/folder"):
        GenerationConfig.from_pretrained("/nonexistent/folder")


def test_generation_config_file_errors_name_the_file(tmp_path):
    (tmp_path / "generation_config.json").write_text("{not json")
    with pytest.raises(OSError, match="generation_config.json"):
        GenerationConfig.from_pretrained(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a directory"):
        GenerationConfig().save_pretrained(tmp_path / "file")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"penalty_alpha": 0.6, "top_k": 4}, "penalty_alpha=0.6 \\(contrastive search"),
        ({"stop_strings": ["cat"]}, "stop_strings"),
        ({"output_attentions": True}, "output_attentions"),
        ({"constraints": ["x"]}, "constraints"),
        ({"logits_processor": [print]}, "logits_processor"),
        ({"custom_generate": "someone/decoder"}, "custom_generate"),
        ({"beams": 3, "no_such_option": 1}, "unexpected arguments \\['beams', 'no_such_option'\\]"),
    ],
)
def test_unsupported_options_are_named(kwargs, message):
    with pytest.raises(GenerationArgumentError, match=message) as caught:
        GenerationOptions.from_kwargs(**kwargs)
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size must be an integer >= 0"),
        ({"bad_words_ids": [5]}, "bad_words_ids"),
        ({"bad_words_ids": [[]]}, "bad_words_ids"),
        ({"sequence_bias": {(3,): "big"}}, "must be a float"),
        ({"exponential_decay_length_penalty": (1.5, 2)}, "exponential_decay_length_penalty"),
        ({"typical_p": 0.0}, "typical_p"),
        ({"eta_cutoff": 1.5}, "eta_cutoff"),
        ({"diversity_penalty": -1.0}, "diversity_penalty"),
        ({"eos_token_id": [3, -1]}, "eos_token_id"),
        ({"suppress_tokens": "abc"}, "suppress_tokens"),
    ],
)
def test_bad_option_values_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenerationOptions.from_kwargs(**kwargs)


def test_options_precedence_and_lengths():
    model = GenerationConfig(num_beams=3, max_new_tokens=7, repetition_penalty=1.2)
    from blip_core.generation.options import resolve_options

    def resolve(**kwargs):
        return resolve_options(kwargs, model, None, vocab_size=99, framework="pt")

    assert (resolve().num_beams, resolve().max_new_tokens) == (3, 7)
    passed = GenerationConfig(max_new_tokens=4, top_k=10)
    options = resolve(generation_config=passed, num_beams=2)
    assert (options.num_beams, options.max_new_tokens, options.repetition_penalty, options.top_k) == (2, 4, 1.2, 10)
    assert resolve(generation_config=passed, use_model_defaults=False).num_beams == 1
    assert GenerationOptions.from_kwargs().length_limits(1, 48) == (20, 0)  # 20 new tokens by default
    assert GenerationOptions.from_kwargs(max_length=20).length_limits(3, 48) == (17, 0)  # an explicit 20 is total
    with pytest.raises(ValueError, match="max_length=3 counts the whole sequence"):
        GenerationOptions.from_kwargs(max_length=3).length_limits(3, 48)
    with pytest.raises(ValueError, match="leaving no room for a new token"):
        GenerationOptions.from_kwargs(max_new_tokens=2).length_limits(48, 48)


def test_saved_generation_config_text_is_transformers():
    config = GenerationConfig.from_model_config(BlipTextConfig(bos_token_id=97))
    assert config.to_json_string() == FACTS["saved_generation_config"]
    assert json.loads(FACTS["saved_generation_config"])["_from_model_config"] is True
