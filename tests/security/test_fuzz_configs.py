"""Property-based fuzzing of the settings-file loaders: config.json, generation_config.json,
preprocessor_config.json, tokenizer_config.json, special_tokens_map.json and added_tokens.json.

Inputs: random JSON (any top level, nested garbage, NaN/inf), valid files with fields deleted, added or
set to wrong-typed or out-of-range values, and files that are not JSON at all. The property: a valid object,
or the loader's documented exception (ValueError/TypeError; OSError for generation_config.json, as in
`transformers`) naming the file; never another exception type or a hang. A config that is accepted and
claims a model too large to build is refused by `check_buildable` before anything is allocated.

Modest example counts by default; `--run-slow` runs thousands per target.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import strategies as st

from blip_core.config.configuration import (
    MAX_PARAMETERS,
    BlipConfig,
    BlipTextConfig,
    BlipVisionConfig,
    estimated_parameters,
)
from blip_core.config.generation_config import GenerationConfig
from blip_core.config.json_files import MAX_JSON_BYTES
from blip_core.processing.image_processing import BlipImageProcessor
from blip_core.processing.tokenization import BlipTokenizer
from tests.security.fuzzing import run_examples

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DEFAULT_EXAMPLES = 40
SLOW_EXAMPLES = 2000


@pytest.fixture
def examples(request) -> int:
    return SLOW_EXAMPLES if request.config.getoption("--run-slow") else DEFAULT_EXAMPLES


def _run(examples: int, strategy, check) -> None:
    run_examples(examples, strategy, check, derandomize=examples <= DEFAULT_EXAMPLES)


# -- strategies ----------------------------------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 10**12, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELD_VALUES = st.one_of(_SCALARS, st.lists(_SCALARS, max_size=3), st.dictionaries(st.text(max_size=5), _SCALARS))


def _edited(base: dict, field_names: list[str]):
    """`base` with some fields (top level or in text_config/vision_config) deleted or set to random values,
    and some random keys added."""
    sections = [key for key, value in base.items() if isinstance(value, dict)]
    edit = st.tuples(st.sampled_from([None, *sections]), st.sampled_from(field_names), st.none() | FIELD_VALUES)
    extra = st.dictionaries(st.text(max_size=10), FIELD_VALUES, max_size=3)

    def apply(case):
        edits, added = case
        data = json.loads(json.dumps(base))
        for section, key, value in edits:
            target = data if section is None else data.get(section)
            if not isinstance(target, dict):
                continue
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
        data.update(added)
        return data

    return st.tuples(st.lists(edit, min_size=1, max_size=4), extra).map(apply)


def _config_fields() -> list[str]:
    fields = set()
    for cls in (BlipConfig, BlipTextConfig, BlipVisionConfig):
        fields |= set(cls().to_dict())
    return sorted(fields | {"model_type", "auto_map", "dtype", "torch_dtype", "__class__", "to_dict", "update"})


CONFIG_BASE = BlipConfig(
    text_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 37},
    vision_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 30},
).to_dict()
CONFIG_FILES = st.one_of(JSON, _edited(CONFIG_BASE, _config_fields()))


def _write(name: str, content) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fuzzcfg"))
    text = content if isinstance(content, str) else json.dumps(content)
    (folder / name).write_text(text, encoding="utf-8")
    return folder


def _documented(err: Exception, folder: Path, types=(ValueError, TypeError)) -> None:
    assert isinstance(err, types), f"{type(err).__name__}: {err}"
    assert str(folder) in str(err), f"the file is not named: {err}"


# -- config.json ---------------------------------------------------------------------------------------


def test_fuzz_config_json(examples):
    """BlipConfig / AutoConfig from a random or edited config.json: a config whose size fields are sane,
    buildable or refused by check_buildable, or a ValueError/TypeError naming the file."""
    from blip_core.processing.auto import AutoConfig

    def check(content) -> None:
        folder = _write("config.json", content)
        try:
            for load in (BlipConfig.from_pretrained, AutoConfig.from_pretrained):
                try:
                    config = load(folder)
                except Exception as err:  # noqa: BLE001 - the property is about the exception's type
                    _documented(err, folder)
                    continue
                _check_accepted(config)
        finally:
            shutil.rmtree(folder)

    _run(examples, CONFIG_FILES, check)


def _check_accepted(config) -> None:
    for part in [config, *(v for v in vars(config).values() if hasattr(v, "to_dict") and v is not config)]:
        for key in ("hidden_size", "vocab_size", "image_size", "patch_size", "num_attention_heads"):
            value = getattr(part, key, None)
            assert value is None or (isinstance(value, int) and value > 0), (key, value)
        for key in ("layer_norm_eps", "initializer_range"):
            value = getattr(part, key, 0.0)
            assert math.isfinite(value), (key, value)
    config.to_json_string()  # an accepted config can be saved
    try:
        config.check_buildable()
    except ValueError as err:
        assert str(err)
    else:
        assert estimated_parameters(config) <= MAX_PARAMETERS


def test_fuzz_text_and_vision_sections(examples):
    """Sub-configs loaded alone from a full config.json take their section; garbage sections are refused."""

    def check(content) -> None:
        folder = _write("config.json", content)
        try:
            for cls in (BlipTextConfig, BlipVisionConfig):
                try:
                    _check_accepted(cls.from_pretrained(folder))
                except Exception as err:  # noqa: BLE001
                    _documented(err, folder)
        finally:
            shutil.rmtree(folder)

    _run(examples, _edited(CONFIG_BASE, _config_fields()), check)


# -- generation_config.json ----------------------------------------------------------------------------

GENERATION_FIELDS = ["max_length", "max_new_tokens", "num_beams", "num_beam_groups", "diversity_penalty"]
GENERATION_FIELDS += ["do_sample", "temperature", "top_k", "top_p", "early_stopping", "num_return_sequences"]
GENERATION_FIELDS += ["bos_token_id", "eos_token_id", "pad_token_id", "min_length", "repetition_penalty"]
GENERATION_FIELDS += [
    "no_repeat_ngram_size",
    "length_penalty",
    "transformers_version",
    "streamer",
    "_from_model_config",
]
GENERATION_BASE = {"bos_token_id": 30522, "eos_token_id": 102, "pad_token_id": 0, "max_length": 20}


def test_fuzz_generation_config_json(examples):
    def check(content) -> None:
        folder = _write("generation_config.json", content)
        try:
            config = GenerationConfig.from_pretrained(folder)
        except Exception as err:  # noqa: BLE001
            _documented(err, folder, (ValueError, TypeError, OSError))
        else:
            config.to_json_string()
        finally:
            shutil.rmtree(folder)

    _run(examples, st.one_of(JSON, _edited(GENERATION_BASE, GENERATION_FIELDS)), check)


# -- preprocessor_config.json --------------------------------------------------------------------------

PREPROCESSOR_BASE = BlipImageProcessor(size=24).to_dict()


def test_fuzz_preprocessor_config_json(examples):
    def check(content) -> None:
        folder = _write("preprocessor_config.json", content)
        try:
            BlipImageProcessor.from_pretrained(folder)
        except Exception as err:  # noqa: BLE001
            _documented(err, folder)
        finally:
            shutil.rmtree(folder)

    fields = [*PREPROCESSOR_BASE, "size", "crop_size", "image_mean", "resample"]
    _run(examples, st.one_of(JSON, _edited(PREPROCESSOR_BASE, fields)), check)


# -- tokenizer files -----------------------------------------------------------------------------------

TOKENIZER_CONFIG = json.loads((FIXTURES / "tokenizer" / "tokenizer_config.json").read_text())
SPECIAL_MAP = json.loads((FIXTURES / "tokenizer" / "special_tokens_map.json").read_text())
TOKENIZER_FIELDS = [*TOKENIZER_CONFIG, *SPECIAL_MAP, "added_tokens_decoder", "model_input_names", "chat_template"]


def _tokenizer_folder(name: str, content, vocab_only: bool) -> Path:
    folder = _write(name, content)
    kept = ["vocab.txt"] if vocab_only else ["vocab.txt", "tokenizer.json"]
    for other in kept + ["tokenizer_config.json", "special_tokens_map.json"]:
        if other != name:
            shutil.copy(FIXTURES / "tokenizer" / other, folder / other)
    return folder


@pytest.mark.parametrize("name", ["tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"])
def test_fuzz_tokenizer_files(examples, name):
    """A random or edited tokenizer settings file: a tokenizer that encodes, or a ValueError/TypeError
    naming the file (added_tokens.json is not read by a fast tokenizer, as in transformers)."""
    base = {"tokenizer_config.json": TOKENIZER_CONFIG, "special_tokens_map.json": SPECIAL_MAP}.get(name, {"x": 30524})

    def check(case) -> None:
        content, vocab_only = case
        folder = _tokenizer_folder(name, content, vocab_only)
        try:
            tokenizer = BlipTokenizer.from_pretrained(folder)
        except Exception as err:  # noqa: BLE001
            _documented(err, folder)
        else:
            ids = tokenizer(["a picture of a dog", ""])["input_ids"]
            assert all(0 <= i < len(tokenizer) for row in ids for i in row)
            if tokenizer.pad_token_id is None:  # a pad token the vocabulary lacks ("" cannot be added)
                with pytest.raises(ValueError, match="pad"):
                    tokenizer(["a dog", ""], padding=True)
        finally:
            shutil.rmtree(folder)

    _run(examples, st.tuples(st.one_of(JSON, _edited(base, TOKENIZER_FIELDS)), st.booleans()), check)


# -- regressions ---------------------------------------------------------------------------------------

LOADERS = {
    "config.json": BlipConfig.from_pretrained,
    "generation_config.json": GenerationConfig.from_pretrained,
    "preprocessor_config.json": BlipImageProcessor.from_pretrained,
    "tokenizer_config.json": BlipTokenizer.from_pretrained,
}


@pytest.mark.parametrize("name", sorted(LOADERS))
@pytest.mark.parametrize(
    "content",
    ["[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000, "[1, 2]", '"text"', "null", "\xff\xfe"],
    ids=["deep_list", "deep_object", "list", "string", "null", "not_utf8"],
)
def test_unusable_json_is_refused_naming_the_file(name, content):
    folder = _tokenizer_folder(name, content, vocab_only=True) if name.startswith("tok") else _write(name, content)
    if content == "\xff\xfe":
        (folder / name).write_bytes(b"\xff\xfe{}")
    with pytest.raises((ValueError, OSError)) as caught:
        LOADERS[name](folder)
    assert str(folder) in str(caught.value)


def test_a_huge_settings_file_is_refused_without_reading_it(tmp_path):
    with open(tmp_path / "config.json", "wb") as file:
        file.write(b'{"a": "')
        file.seek(MAX_JSON_BYTES + 10)
        file.write(b'"}')
    with pytest.raises(ValueError, match="larger than 32 MiB"):
        BlipConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    ("section", "fields", "named"),
    [
        ("text_config", {"hidden_size": -768}, "hidden_size"),
        ("text_config", {"vocab_size": 0}, "vocab_size"),
        ("text_config", {"vocab_size": 2**40}, "vocab_size"),
        ("vision_config", {"image_size": 0}, "image_size"),
        ("vision_config", {"layer_norm_eps": float("nan")}, "layer_norm_eps"),
        ("text_config", {"initializer_range": float("inf")}, "initializer_range"),
        ("text_config", {"hidden_dropout_prob": 1.5}, "hidden_dropout_prob"),
        ("text_config", {"bos_token_id": "[DEC]"}, "bos_token_id"),
        ("text_config", {"eos_token_id": [102, -1]}, "eos_token_id"),
        ("text_config", {"to_dict": 1}, "to_dict"),
        ("text_config", {"use_return_dict": False}, "use_return_dict"),
        ("text_config", {"__dict__": {}}, "__dict__"),
        (None, {"text_config": [1, 2]}, "text_config"),
    ],
)
def test_bad_fields_are_refused_naming_file_and_field(tmp_path, section, fields, named):
    data = json.loads(json.dumps(CONFIG_BASE))
    (data if section is None else data[section]).update(fields)
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises((ValueError, TypeError), match=named) as caught:
        BlipConfig.from_pretrained(tmp_path)
    assert str(tmp_path) in str(caught.value)


@pytest.mark.parametrize(
    ("section", "fields", "named"),
    [
        ("text_config", {"vocab_size": 10**9}, "parameters"),
        ("text_config", {"hidden_size": 10**9, "num_attention_heads": 1}, "parameters"),
        ("vision_config", {"image_size": 10**8, "patch_size": 1}, "parameters"),
        ("vision_config", {"patch_size": 31}, "patch_size"),
        ("text_config", {"num_attention_heads": 5}, "num_attention_heads"),
        ("text_config", {"num_hidden_layers": 100_000}, "num_hidden_layers"),
        ("text_config", {"hidden_act": "swish-ish"}, "hidden_act"),
        ("vision_config", {"hidden_act": ["gelu"]}, "hidden_act"),
    ],
)
def test_claimed_sizes_are_refused_before_allocating(section, fields, named):
    """Accepted as a config (as transformers), refused when a model is built, before any allocation."""
    data = json.loads(json.dumps(CONFIG_BASE))
    data[section].update(fields)
    config = BlipConfig.from_dict(data)
    with pytest.raises(ValueError, match=named):
        config.check_buildable()


def test_the_real_blip_large_configs_are_within_the_limits():
    large = json.loads((FIXTURES / "configs" / "large_diff_config.json").read_text())
    config = BlipConfig.from_dict(large)
    config.check_buildable()
    assert 4e8 < estimated_parameters(config) < MAX_PARAMETERS / 4


@pytest.mark.parametrize("framework", ["torch", "tf"])
@pytest.mark.parametrize(
    ("section", "fields"),
    [("text_config", {"vocab_size": 10**9}), ("vision_config", {"hidden_size": 10**6, "num_attention_heads": 1})],
)
def test_models_refuse_claimed_sizes_before_allocating(framework, section, fields):
    """Both trees' constructors (BlipForConditionalGeneration and the bare text/vision models) refuse a config
    claiming a model above MAX_PARAMETERS at once; nothing of its size is allocated (it would take 100+ GB)."""
    package = pytest.importorskip("blip_torch" if framework == "torch" else "blip_tf")
    prefix = "" if framework == "torch" else "TF"
    data = json.loads(json.dumps(CONFIG_BASE))
    data[section].update(fields)
    config = BlipConfig.from_dict(data)
    sub = getattr(config, section)
    bare = "BlipTextModel" if section == "text_config" else "BlipVisionModel"
    for cls, cfg in ((f"{prefix}BlipForConditionalGeneration", config), (prefix + bare, sub)):
        with pytest.raises(ValueError, match="parameters"):
            getattr(package, cls)(cfg)


@pytest.mark.parametrize("model_type", [[], {"a": 1}, 3, None, "bert"])
def test_auto_config_refuses_a_model_type_of_any_other_kind(tmp_path, model_type):
    """Found by the fuzzing: a list as model_type raised TypeError('unhashable type') without the file."""
    from blip_core.processing.auto import AutoConfig

    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    with pytest.raises(ValueError, match="model_type") as caught:
        AutoConfig.from_pretrained(tmp_path)
    assert str(tmp_path) in str(caught.value)


@pytest.mark.parametrize("key", ["__dict__", "validate", "to_dict", "update"])
def test_generation_config_keys_naming_attributes_are_refused(tmp_path, key):
    """Found by the fuzzing: {"__dict__": {}} replaced the object's attributes (an AttributeError later)."""
    (tmp_path / "generation_config.json").write_text(json.dumps({key: {}}))
    with pytest.raises(ValueError, match=key) as caught:
        GenerationConfig.from_pretrained(tmp_path)
    assert str(tmp_path) in str(caught.value)
