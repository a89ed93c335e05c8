"""Configs: `transformers` 4.57 fields, defaults and quirks; round trips; Hub full dumps."""

from __future__ import annotations

import json

import pytest

from blip_core import BlipConfig, BlipTextConfig, BlipVisionConfig
from tests.helpers.golden import FIXTURES, load_json

GOLDEN = load_json("configs.json")
CONFIGS = FIXTURES / "configs"


def test_default_diff_matches_transformers():
    ours = json.loads(BlipConfig().to_json_string())
    theirs = GOLDEN["default_diff"]
    theirs.pop("transformers_version")
    ours["vision_config"].pop("num_channels")  # Hub configs carry it; 4.57 has no such field
    assert ours == theirs


@pytest.mark.parametrize("name", ["full_dump_config.json", "large_diff_config.json"])
def test_hub_configs_load_like_transformers(name):
    config = BlipConfig.from_pretrained(CONFIGS / name)
    golden = GOLDEN["loaded"][name]
    for key, value in golden["top"].items():
        assert getattr(config, key) == value, key
    for section, sub in (("text", config.text_config), ("vision", config.vision_config)):
        ours = sub.to_dict()
        for key in type(sub).own_defaults:
            if key in golden[section]:
                assert ours[key] == golden[section][key], f"{section}.{key}"
        for key in (
            "bos_token_id",
            "eos_token_id",
            "pad_token_id",
            "sep_token_id",
            "is_decoder",
            "tie_word_embeddings",
        ):
            assert ours[key] == golden[section][key], f"{section}.{key}"


def test_full_dump_keeps_unknown_keys_through_a_round_trip(tmp_path):
    config = BlipConfig.from_pretrained(CONFIGS / "full_dump_config.json")
    assert config.architectures == ["BlipForConditionalGeneration"]
    assert config.text_config.num_attention_heads == 12
    config.save_pretrained(tmp_path)
    again = BlipConfig.from_pretrained(tmp_path)
    assert again == config
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["text_config"]["num_attention_heads"] == 12 and raw["model_type"] == "blip"


def test_quirks():
    assert BlipTextConfig().num_attention_heads == 8
    assert BlipConfig(vision_config={"hidden_size": 1024}).text_config.encoder_hidden_size == 1024
    config = BlipConfig(initializer_factor=5.0, initializer_range=0.5, label_smoothing=0.1)
    assert (config.initializer_factor, config.initializer_range) == (1.0, 0.02)
    assert config.text_config.label_smoothing == 0.0
    assert BlipVisionConfig(num_channels=3).num_channels == 3
    assert BlipVisionConfig().layer_norm_eps == 1e-5 and BlipTextConfig().layer_norm_eps == 1e-12
    assert BlipTextConfig(torch_dtype="float16").dtype == "float16"


def test_unknown_keys_are_kept():
    config = BlipTextConfig.from_dict({"hidden_size": 32, "num_attention_heads": 4, "my_extra": [1, 2]})
    assert config.my_extra == [1, 2]
    assert BlipTextConfig.from_dict(config.to_dict()).my_extra == [1, 2]


def test_sub_config_from_a_full_config(tmp_path):
    BlipConfig(
        text_config={"hidden_size": 48, "num_attention_heads": 4},
        vision_config={"hidden_size": 40, "num_attention_heads": 5},
    ).save_pretrained(tmp_path)
    assert BlipTextConfig.from_pretrained(tmp_path).hidden_size == 48
    assert BlipVisionConfig.from_pretrained(tmp_path).hidden_size == 40
    assert BlipTextConfig.from_pretrained(tmp_path).encoder_hidden_size == 40


def test_from_text_vision_configs():
    text, vision = (
        BlipTextConfig(hidden_size=32, num_attention_heads=4),
        BlipVisionConfig(hidden_size=24, num_attention_heads=4),
    )
    config = BlipConfig.from_text_vision_configs(text, vision, projection_dim=16)
    assert config.text_config.hidden_size == 32 and config.vision_config.hidden_size == 24
    assert config.text_config.encoder_hidden_size == 24 and config.projection_dim == 16


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: BlipVisionConfig(hidden_size="768"), "hidden_size.*positive integer"),
        (lambda: BlipTextConfig(num_hidden_layers=0), "num_hidden_layers.*positive integer"),
        (lambda: BlipVisionConfig(num_channels=4), "num_channels must be 3"),
        (lambda: BlipConfig(text_config=[1]), "text_config must be a dict"),
        (
            lambda: BlipConfig(vision_config={"hidden_size": 30, "num_attention_heads": 4}).check_buildable(),
            "not a multiple",
        ),
    ],
)
def test_bad_values_are_named(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_bad_files_are_named(tmp_path):
    (tmp_path / "config.json").write_text("{oops")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        BlipConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type 'bert' cannot be loaded as BlipConfig"):
        BlipConfig.from_pretrained(tmp_path)
    with pytest.raises(OSError, match="config.json not found"):
        BlipConfig.from_pretrained(tmp_path / "..")
