"""`from_pretrained`'s keyword arguments in both frameworks, against what `transformers` 4.57.6 does with them
(tests/golden/loading_options.json, made by tests/tools/make_loading_options_golden.py on the committed
fixture `caption_safetensors`): honoured, inert, or refused with the exception type it raises; config
overrides set the config (and the generation config) and never leak into it."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import PIL.Image
import pytest
import torch

import blip_core
import blip_tf
import blip_torch
from blip_core import BlipConfig, GenerationConfig
from blip_core.modeling.load_options import INERT_OPTIONS
from blip_core.weights import CheckpointError
from tests.helpers.golden import FIXTURES, load_json

GOLDEN = load_json("loading_options.json")["from_pretrained"]
FOLDERS = {"caption": FIXTURES / "hf_checkpoints" / "caption_safetensors"}
FOLDERS["caption_bin"] = FIXTURES / "hf_checkpoints" / "caption_bin"
CAPTION = "BlipForConditionalGeneration"
CASES = sorted(name for name, case in GOLDEN.items() if "kwargs" in case)
# Where blip-dual does better on purpose (docs/differences.md): transformers' BLIP refuses "sdpa"; both
# frameworks here run it (scaled-dot-product attention, the same numbers as "eager").
ACCEPTED_HERE = {"attn sdpa": {"_attn_implementation": "sdpa"}}
BUILTIN = (TypeError, ValueError, OSError)


def model_class(framework: str, class_name: str = CAPTION):
    return getattr(blip_torch, class_name) if framework == "pt" else getattr(blip_tf, "TF" + class_name)


def dtype_name(model) -> str:
    return str(model.dtype).replace("torch.", "")


def observed(model, info) -> dict:
    """The values the golden script recorded, read from one of our models."""
    config = {name: getattr(model.config, name, None) for name in ("output_attentions", "num_beams", "max_length")}
    config["_attn_implementation"] = model.config._attn_implementation
    config["text_config.num_beams"] = model.config.text_config.num_beams
    config["text_config.hidden_size"] = model.config.text_config.hidden_size
    generation = {name: getattr(model.generation_config, name) for name in ("num_beams", "max_length")}
    generation["output_attentions"] = model.generation_config.output_attentions
    out = {"ok": True, "config": config, "generation": generation, "dtype": dtype_name(model)}
    if info is not None:
        out["loading_info"] = info
    return out


@pytest.mark.parametrize("framework", ["pt", "tf"])
@pytest.mark.parametrize("case", CASES)
def test_option_as_transformers(framework, case):
    golden = GOLDEN[case]
    kwargs = copy.deepcopy(golden["kwargs"])
    load = model_class(framework).from_pretrained
    if "ok" not in golden and case not in ACCEPTED_HERE:
        expected = next(base for base in BUILTIN if base.__name__ in golden["raises"])
        with pytest.raises(expected) as info:
            load(FOLDERS[golden["folder"]], **kwargs)
        message = str(info.value)  # names the option, or the folder when no weight file fits
        assert any(key in message for key in kwargs) or (
            expected is OSError and str(FOLDERS["caption"].parent) in message
        )
        return
    result = load(FOLDERS[golden["folder"]], **kwargs)
    model, info = result if isinstance(result, tuple) else (result, None)
    want = {key: value for key, value in golden.items() if key not in ("kwargs", "folder")}
    if case in ACCEPTED_HERE:
        want = copy.deepcopy(GOLDEN["attn eager"])
        want = {key: value for key, value in want.items() if key not in ("kwargs", "folder")}
        want["config"].update(ACCEPTED_HERE[case])
    assert observed(model, info) == want
    leaked = {key for key in kwargs if key in INERT_OPTIONS or key.startswith("_")} & set(model.config.to_dict())
    assert not leaked and "low_cpu_mem_usage" not in model.config.to_json_string()


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_config_object_is_copied_and_takes_no_overrides(framework):
    config = BlipConfig.from_pretrained(FOLDERS["caption"])
    before = config.to_dict()
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['output_attentions'\]"):
        model_class(framework).from_pretrained(FOLDERS["caption"], config=config, output_attentions=True)
    assert GOLDEN["config object with an override"]["raises"][0] == "TypeError"
    model = model_class(framework).from_pretrained(FOLDERS["caption"], config=config, attn_implementation="eager")
    assert (model.config is config) is GOLDEN["config object is copied"]["same_object"]
    assert config.to_dict() == before and model.config == config
    by_path = model_class(framework).from_pretrained(FOLDERS["caption"], config=str(FOLDERS["caption"]), num_beams=2)
    assert by_path.config.num_beams == 2 and by_path.generation_config.num_beams == 2
    with pytest.raises(TypeError, match="config must be a BlipConfig"):
        model_class(framework).from_pretrained(FOLDERS["caption"], config={"projection_dim": 12})


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_generation_config_argument_wins_over_the_file(framework):
    given = GenerationConfig(num_beams=2, max_new_tokens=5)
    model = model_class(framework).from_pretrained(FOLDERS["caption"], generation_config=given, num_beams=4)
    assert (model.generation_config.num_beams, model.generation_config.max_new_tokens) == (2, 5)
    assert model.generation_config is not given and model.config.num_beams == 4


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_overrides_reach_a_generation_config_derived_from_the_config(framework, tiny_checkpoints):
    """No generation_config.json (the tiny checkpoints have none): transformers derives it from the config,
    overrides included (recorded: `num_beams=3` gives 3 with the file; the derivation gives the same)."""
    model = model_class(framework).from_pretrained(tiny_checkpoints[CAPTION], num_beams=3, max_length=7)
    assert (model.generation_config.num_beams, model.generation_config.max_length) == (3, 7)
    model = model_class(framework).from_pretrained(tiny_checkpoints[CAPTION], text_config={"num_beams": 4})
    assert model.generation_config.num_beams == 4 and model.generation_config.is_unmodified()


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_mismatched_sizes_are_never_reinitialised(framework):
    with pytest.raises(CheckpointError, match="ignore_mismatched_sizes=True does not apply") as info:
        model_class(framework).from_pretrained(
            FOLDERS["caption"], ignore_mismatched_sizes=True, text_config={"vocab_size": 100}
        )
    assert "word_embeddings.weight: file (99, 20), model (100, 20)" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_dtype_and_device_names_in_both_frameworks():
    folder = FOLDERS["caption"]
    assert blip_torch.BlipForConditionalGeneration.from_pretrained(folder, dtype="float16").dtype == torch.float16
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(folder, torch_dtype="auto", device_map="cpu")
    assert (model.dtype, model.device.type) == (torch.float32, "cpu")  # the fixture's config says float32
    both = blip_torch.BlipForConditionalGeneration.from_pretrained(folder, dtype="bfloat16", torch_dtype="float16")
    assert both.dtype == torch.bfloat16  # transformers: dtype wins over its older name
    tf_model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(folder, torch_dtype=torch.float16, device="cpu")
    assert tf_model.dtype == "float16" and "CPU" in tf_model.variables[0].value.device
    tf_model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(folder, dtype="auto", device_map="auto")
    assert tf_model.dtype == "float32"
    for framework in ("pt", "tf"):
        with pytest.raises(ValueError, match="multi-device maps are not supported"):
            model_class(framework).from_pretrained(folder, device_map={"vision_model": 0, "text_decoder": 1})


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_auto_classes_take_the_same_options(framework, tmp_path):
    shutil.copytree(FOLDERS["caption"], tmp_path / "repo" / "caption")
    auto = blip_torch.AutoModel if framework == "pt" else blip_tf.TFAutoModel
    model, info = auto.from_pretrained(
        tmp_path / "repo", subfolder="caption", low_cpu_mem_usage=True, from_tf=True, output_loading_info=True
    )
    assert type(model).__name__.removeprefix("TF") == CAPTION and info["missing_keys"] == []
    config = BlipConfig.from_pretrained(FOLDERS["caption"])
    config.architectures = ["BlipModel"]  # the config object given decides the class, as in transformers
    with pytest.raises(CheckpointError):  # a captioning checkpoint does not hold BlipModel's projections
        auto.from_pretrained(FOLDERS["caption"], config=config)
    with pytest.raises(ValueError, match="load_in_4bit=True is not supported"):
        auto.from_pretrained(FOLDERS["caption"], load_in_4bit=True)


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_pipeline_model_kwargs_go_through_the_same_options(framework, small_models):
    folder = str(small_models[CAPTION])
    image = PIL.Image.fromarray(np.full((48, 48, 3), 120, np.uint8))
    pipe = blip_core.pipeline(
        "image-to-text",
        model=folder,
        framework=framework,
        model_kwargs={"low_cpu_mem_usage": True, "attn_implementation": "eager", "use_safetensors": True},
    )
    plain = blip_core.pipeline("image-to-text", model=folder, framework=framework)
    assert pipe(image, max_new_tokens=4) == plain(image, max_new_tokens=4)
    with pytest.raises(ValueError, match="load_in_8bit=True is not supported"):
        blip_core.pipeline("image-to-text", model=folder, framework=framework, model_kwargs={"load_in_8bit": True})
    with pytest.raises(TypeError, match=r"\['not_an_option'\]"):
        blip_core.pipeline("image-to-text", model=folder, framework=framework, model_kwargs={"not_an_option": 1})
    half = blip_core.pipeline("image-to-text", model=folder, framework=framework, model_kwargs={"dtype": "bfloat16"})
    assert dtype_name(half.model) == "bfloat16"
    with pytest.raises(ValueError, match="both to pipeline"):
        blip_core.pipeline(
            "image-to-text", model=folder, framework=framework, dtype="float32", model_kwargs={"dtype": "bfloat16"}
        )


def test_tf_variables_follow_the_device():
    model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(FOLDERS["caption"], device=-1)
    assert all("CPU" in variable.value.device for variable in model.variables)
    with pytest.raises(ValueError, match="is not a TensorFlow device"):
        blip_tf.TFBlipForConditionalGeneration.from_pretrained(FOLDERS["caption"], device="tpu")
