"""The framework-neutral half of `from_pretrained`/`save_pretrained` options: the Hub option list every
`from_pretrained` shares, weight-file selection (`subfolder`, `variant`, `use_safetensors`), config overrides,
the shard plan and size parsing, and the files a save leaves behind. `transformers` 4.57.6's choices are in
tests/golden/loading_options.json (tests/tools/make_loading_options_golden.py)."""

from __future__ import annotations

import json
import warnings

import pytest

from blip_core import (
    AutoImageProcessor,
    AutoProcessor,
    BlipConfig,
    BlipImageProcessor,
    BlipImageProcessorFast,
    BlipProcessor,
    BlipTokenizer,
    GenerationConfig,
)
from blip_core.checkpoints.writing import parse_save_options, parse_shard_size, plan_shards, stale_weight_files
from blip_core.io.hub import add_variant, resolve_weights, split_hub_options
from blip_core.modeling.load_options import INERT_OPTIONS, REFUSED_OPTIONS, parse_load_options
from blip_core.processing.tokenization import BUNDLED_VOCAB_FILE
from tests.helpers.golden import FIXTURES, load_json

GOLDEN = load_json("loading_options.json")
CAPTION = FIXTURES / "hf_checkpoints" / "caption_safetensors"
# What a transformers program passes besides the name, none of which changes what is read here.
INERT_HUB = {"use_auth_token": None, "resume_download": True, "proxies": {"https": "http://127.0.0.1:9"}}
INERT_HUB |= {"trust_remote_code": True, "force_download": False, "mirror": "x", "_from_auto": True}


def test_hub_options_are_one_list_old_token_name_renamed_inert_ones_dropped():
    hub, rest = split_hub_options({**INERT_HUB, "use_auth_token": "t", "subfolder": "s", "revision": "v1", "n": 1})
    assert hub == {"token": "t", "subfolder": "s", "revision": "v1", "force_download": False}
    assert rest == {"n": 1}
    with pytest.raises(ValueError, match="`token` and `use_auth_token` are both specified"):
        split_hub_options({"token": "a", "use_auth_token": "b"})  # transformers raises ValueError too
    assert GOLDEN["from_pretrained"]["token and use_auth_token"]["raises"][0] == "ValueError"


def test_variant_file_names_are_transformers():
    """The names transformers wrote for variant="fp16" (golden), from the plain names."""
    written = GOLDEN["save"]["BlipForConditionalGeneration"]
    assert add_variant("model.safetensors", "fp16") in written["single_variant"]
    assert add_variant("pytorch_model.bin.index.json", "fp16") in written["bin_fp16"]["files"]
    assert add_variant("tf_model.h5", "fp16") == "tf_model.fp16.h5"
    assert add_variant("model.safetensors", None) == "model.safetensors"


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def test_weights_are_found_in_a_subfolder_for_a_variant(tmp_path):
    _touch(tmp_path / "sub", "model.safetensors", "model.fp16.safetensors", "pytorch_model.fp16.bin")
    files = resolve_weights(tmp_path, subfolder="sub", variant="fp16")
    assert (files.format, files.paths) == ("safetensors", (tmp_path / "sub" / "model.fp16.safetensors",))
    files = resolve_weights(tmp_path, subfolder="sub", variant="fp16", formats=("bin", "h5", "keras"))
    assert files.paths == (tmp_path / "sub" / "pytorch_model.fp16.bin",)
    index = {"metadata": {}, "weight_map": {"a": "model.fp16-00001-of-00002.safetensors", "b": "x.safetensors"}}
    _touch(tmp_path / "sharded", "model.fp16-00001-of-00002.safetensors", "x.safetensors")
    (tmp_path / "sharded" / "model.safetensors.index.fp16.json").write_text(json.dumps(index))
    files = resolve_weights(tmp_path, subfolder="sharded", variant="fp16")
    assert [path.name for path in files.paths] == ["model.fp16-00001-of-00002.safetensors", "x.safetensors"]


def test_missing_weights_name_the_folder_and_the_files_looked_for(tmp_path):
    _touch(tmp_path / "sub", "model.safetensors")
    with pytest.raises(FileNotFoundError, match=r"sub: expected one of pytorch_model.bin, tf_model.h5"):
        resolve_weights(tmp_path, subfolder="sub", formats=("bin", "h5", "keras"))
    with pytest.raises(OSError, match="expected one of model.fp16.safetensors, pytorch_model.fp16.bin"):
        resolve_weights(tmp_path, subfolder="sub", variant="fp16")
    with pytest.raises(ValueError, match="subfolder must be a relative folder"):
        resolve_weights(tmp_path, subfolder="../elsewhere")
    with pytest.raises(ValueError, match="variant must be a name"):
        resolve_weights(tmp_path, variant="../x")


def test_shard_sizes_read_as_transformers_reads_them():
    for text, value in GOLDEN["shard_sizes"].items():
        if isinstance(value, int):
            assert parse_shard_size(text) == value, text
        elif text == "1GiB":  # PyTorch transformers refuses binary units; its TF save_pretrained takes them
            assert parse_shard_size(text) == 2**30
        else:
            with pytest.raises(ValueError, match="max_shard_size"):
                parse_shard_size(text)
    assert parse_shard_size(1234) == 1234
    for bad in (0, True, 1.5, "-1GB", None):
        with pytest.raises(ValueError, match="max_shard_size"):
            parse_shard_size(bad)


def test_shard_plan_splits_in_order_and_keeps_shared_storage_together():
    sizes = {"a": 40, "b": 40, "c": 100, "d": 10, "e": 40}
    shards, total = plan_shards(sizes, "model.safetensors", 90)
    assert shards == {  # huggingface_hub's rule, which transformers uses: a tensor above the limit is a shard at once
        "model-00001-of-00003.safetensors": ["c"],
        "model-00002-of-00003.safetensors": ["a", "b", "d"],
        "model-00003-of-00003.safetensors": ["e"],
    }
    assert total == 230
    shards, total = plan_shards({"a": 40, "b": 40, "alias": 40}, "pytorch_model.fp16.bin", 50, {"alias": "a", "a": "a"})
    assert shards == {
        "pytorch_model.fp16-00001-of-00002.bin": ["a", "alias"],
        "pytorch_model.fp16-00002-of-00002.bin": ["b"],
    }
    assert total == 80
    assert plan_shards({"a": 40}, "tf_model.h5", 10**9) == ({"tf_model.h5": ["a"]}, 40)


def test_stale_files_are_those_that_would_shadow_the_new_ones(tmp_path):
    old = ["model.safetensors", "model.safetensors.index.json", "model-00001-of-00002.safetensors"]
    old += ["model-00002-of-00002.safetensors", "pytorch_model-00001-of-00003.bin", "model.fp16.safetensors"]
    old += ["tf_model.h5", "model.weights.h5", "notes.txt", "model-1-of-2.safetensors"]
    _touch(tmp_path, *old, "pytorch_model.bin")
    stale = stale_weight_files(tmp_path, "bin", None, {"pytorch_model.bin"})
    expected = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors"]
    expected += ["model.safetensors.index.json", "pytorch_model-00001-of-00003.bin"]
    assert sorted(path.name for path in stale) == expected  # later formats, other variants, other files stay
    index = {"weight_map": {"a": "custom.safetensors", "b": "notes.txt"}}  # an index never removes other files
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    _touch(tmp_path, "custom.safetensors")
    stale = stale_weight_files(tmp_path, "bin", None, {"pytorch_model.bin"})
    assert "custom.safetensors" in {path.name for path in stale} and "notes.txt" not in {path.name for path in stale}
    written = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"}
    assert {path.name for path in stale_weight_files(tmp_path, "safetensors", None, written)} == {"model.safetensors"}


def test_config_keyword_arguments_as_transformers():
    """Fields set, a section dict merged into that section, the rest returned (or ignored, with a warning)."""
    golden = GOLDEN["config_kwargs"]
    config, unused = BlipConfig.from_pretrained(
        CAPTION, foo=1, output_attentions=True, variant="x", return_unused_kwargs=True
    )
    assert unused == golden["unused"] and config.output_attentions is True
    merged = BlipConfig.from_pretrained(CAPTION, text_config={"num_beams": 4})
    assert {"num_beams": merged.text_config.num_beams, "hidden_size": merged.text_config.hidden_size} == golden[
        "merged_text_config"
    ]
    with pytest.warns(UserWarning, match=r"ignored keyword arguments \['foo'\]"):
        assert hasattr(BlipConfig.from_pretrained(CAPTION, foo=1), "foo") is golden["unknown_is_set"]
    assert BlipConfig.from_pretrained(CAPTION, torch_dtype="bfloat16").dtype == "bfloat16"


@pytest.mark.parametrize("name", sorted(REFUSED_OPTIONS))
def test_refused_options_name_themselves_and_their_off_values_pass(name):
    off_values, _ = REFUSED_OPTIONS[name]
    for off in off_values:
        assert parse_load_options("BlipModel", {name: off}).overrides == {}
    with pytest.raises(ValueError, match=rf"BlipModel.from_pretrained: {name}=.* is not supported"):
        parse_load_options("BlipModel", {name: "on"})


def test_inert_options_leave_nothing_behind():
    options = parse_load_options("BlipModel", {**dict.fromkeys(INERT_OPTIONS, True), **INERT_HUB})
    assert options.overrides == {} and options.hub == {"force_download": False}
    with pytest.raises(ValueError, match="attn_implementation='flex_attention' is not supported"):
        parse_load_options("BlipModel", {"attn_implementation": "flex_attention"})
    with pytest.raises(TypeError, match="use_safetensors must be True, False or None"):
        parse_load_options("BlipModel", {"use_safetensors": "yes"})


def test_save_options_checked_before_anything_is_written():
    options = parse_save_options("BlipModel", True, False, "10KB", False, "fp16", None, {"commit_message": "m"})
    assert (options.max_shard_size, options.safe_serialization, options.variant) == (10_000, False, "fp16")
    assert (
        parse_save_options("BlipModel", True, False, 5, True, None, None, {"save_config": False}).is_main_process
        is False
    )
    with pytest.raises(ValueError, match="push_to_hub=True is not supported"):
        parse_save_options("BlipModel", True, True, "5GB", True, None, None, {})
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['shard_size'\]"):
        parse_save_options("BlipModel", True, False, "5GB", True, None, None, {"shard_size": 3})
    with pytest.raises(ValueError, match="max_shard_size='5 gigs'"):
        parse_save_options("BlipModel", True, False, "5 gigs", True, None, None, {})


@pytest.fixture
def processor_repo(tmp_path):
    """A repo-like folder whose processor, config and generation config sit in `sub/`."""
    folder = tmp_path / "repo" / "sub"
    BlipProcessor(BlipImageProcessor(size=48), BlipTokenizer(vocab_file=BUNDLED_VOCAB_FILE)).save_pretrained(folder)
    BlipConfig(text_config={"hidden_size": 32}).save_pretrained(folder)
    GenerationConfig(num_beams=3).save_pretrained(folder)
    return tmp_path / "repo"


def test_every_other_from_pretrained_takes_the_same_hub_options(processor_repo):
    options = {**INERT_HUB, "subfolder": "sub"}
    assert BlipConfig.from_pretrained(processor_repo, **options).text_config.hidden_size == 32
    assert GenerationConfig.from_pretrained(processor_repo, **options).num_beams == 3
    assert BlipTokenizer.from_pretrained(processor_repo, **options)("a cat").input_ids == [101, 1037, 4937, 102]
    for loader in (BlipImageProcessor, BlipImageProcessorFast, AutoImageProcessor):
        assert loader.from_pretrained(processor_repo, **options).size == {"height": 48, "width": 48}
    assert type(AutoImageProcessor.from_pretrained(processor_repo, use_fast=True, **options)) is BlipImageProcessorFast
    for loader in (BlipProcessor, AutoProcessor):
        processor = loader.from_pretrained(processor_repo, **options)
        assert processor.image_processor.size["height"] == 48 and len(processor.tokenizer) == 30524
    with pytest.raises(FileNotFoundError, match=r"config.json not found in folder .*repo/elsewhere"):
        BlipConfig.from_pretrained(processor_repo, subfolder="elsewhere")
    with pytest.raises(ValueError, match="`token` and `use_auth_token`"):
        BlipProcessor.from_pretrained(processor_repo, subfolder="sub", token="a", use_auth_token="b")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing of the above is "ignored"
        BlipConfig.from_pretrained(processor_repo, **options)


def _hub_snapshot(cache, repo_id: str, files: dict[str, bytes]):
    """`files` (paths may hold a subfolder) laid out as huggingface_hub's cache holds a snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs").mkdir()
    for number, (name, data) in enumerate(files.items()):
        (repo / "blobs" / f"blob{number}").write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(repo / "blobs" / f"blob{number}")


def test_hub_ids_take_subfolder_variant_and_force_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = (CAPTION / "config.json").read_bytes()
    weights = (CAPTION / "model.safetensors").read_bytes()
    _hub_snapshot(tmp_path, "org/blip", {"sub/config.json": config, "sub/model.fp16.safetensors": weights})
    hub = {"cache_dir": tmp_path, "subfolder": "sub"}
    assert BlipConfig.from_pretrained("org/blip", **hub, use_auth_token=None).projection_dim == 12
    files = resolve_weights("org/blip", **hub, variant="fp16")
    assert files.paths[0].name == "model.fp16.safetensors" and files.paths[0].parent.name == "sub"
    with pytest.raises(OSError, match="no weights found in org/blip/sub: expected one of model.safetensors"):
        resolve_weights("org/blip", **hub)
    with pytest.raises(ValueError, match="force_download=True cannot fetch 'config.json' from 'org/blip'"):
        BlipConfig.from_pretrained("org/blip", **hub, force_download=True)


def test_every_other_save_pretrained_takes_transformers_arguments(processor_repo, tmp_path):
    processor = BlipProcessor.from_pretrained(processor_repo, subfolder="sub")
    savers = {
        "BlipConfig": BlipConfig().save_pretrained,
        "GenerationConfig": GenerationConfig(num_beams=2).save_pretrained,
        "BlipProcessor": processor.save_pretrained,
        "BlipTokenizer": processor.tokenizer.save_pretrained,
        "BlipImageProcessor": processor.image_processor.save_pretrained,
    }
    for owner, save in savers.items():
        save(tmp_path / owner, push_to_hub=False, commit_message="unused without push_to_hub")
        assert any((tmp_path / owner).iterdir()), owner
        with pytest.raises(OSError, match=f"cannot push {owner} to 'hub': HF_HUB_OFFLINE is set"):
            save(tmp_path / "hub", push_to_hub=True)  # tests run offline; uploads: tests/core/test_push_to_hub.py
        with pytest.raises(TypeError, match=rf"{owner}.save_pretrained\(\) got unexpected keyword argument"):
            save(tmp_path / "typo", push_too_hub=True)
    processor.save_pretrained(tmp_path / "legacy", legacy_serialization=False)
    processor.tokenizer.save_pretrained(tmp_path / "legacy", legacy_format=False)
    assert BlipTokenizer.from_pretrained(tmp_path / "legacy")("a cat").input_ids == [101, 1037, 4937, 102]
    with pytest.raises(ValueError, match="filename_prefix is not supported"):
        processor.tokenizer.save_pretrained(tmp_path / "prefixed", filename_prefix="mine")
    assert not (tmp_path / "hub").exists() and not (tmp_path / "typo").exists()
