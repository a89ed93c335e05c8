"""`from_pretrained` in both frameworks fails with the exception types programs written for `transformers`
catch (recorded from transformers 4.57.6: tests/golden/hub_errors.json), with a message naming the path."""

from __future__ import annotations

import pytest
from huggingface_hub import errors

import blip_torch
from blip_core import BlipConfig
from tests.helpers.hub_errors import REPO, assert_types_of_transformers, hub_error

CAPTION = "BlipForConditionalGeneration"


def model_class(framework: str):
    if framework == "pt":
        return getattr(blip_torch, CAPTION)
    import blip_tf

    return getattr(blip_tf, "TF" + CAPTION)


@pytest.fixture
def folders(tmp_path):
    (tmp_path / "empty").mkdir()
    BlipConfig().save_pretrained(tmp_path / "config_only")
    return tmp_path


@pytest.mark.parametrize("framework", ["pt", "tf"])
@pytest.mark.parametrize(
    "case, where, message",
    [
        ("model_missing_absolute_path", "no/such", "neither an existing folder nor a Hub repo id"),
        ("model_file_path", "config_only/config.json", "is a file; pass the folder that holds it"),
        ("model_empty_folder", "empty", "config.json not found in folder"),
        ("model_folder_without_weights", "config_only", "no weights found in .*model.safetensors, pytorch_model.bin"),
    ],
)
def test_local_misses(framework, case, where, message, folders):
    with pytest.raises(OSError, match=message) as info:
        model_class(framework).from_pretrained(folders / where)
    assert_types_of_transformers(info.value, case)
    assert str(folders) in str(info.value)


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_relative_missing_path(framework, folders, monkeypatch):
    monkeypatch.chdir(folders)
    with pytest.raises(ValueError, match="./no-such-folder is neither an existing folder") as info:
        model_class(framework).from_pretrained("./no-such-folder")
    assert_types_of_transformers(info.value, "model_missing_relative_path")


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_hub_repository_not_found(framework, monkeypatch):
    original = hub_error(errors.RepositoryNotFoundError, 404)

    def download(*args, **kwargs):
        raise original

    monkeypatch.setattr("huggingface_hub.hf_hub_download", download)
    with pytest.raises(errors.RepositoryNotFoundError, match=f"{REPO!r} is neither a local folder") as info:
        model_class(framework).from_pretrained(REPO)
    assert info.value.__cause__ is original
    assert_types_of_transformers(info.value, "repository_not_found")


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_hub_weights_missing_from_a_cached_repo(framework, tmp_path, monkeypatch):
    """config.json is there, no weights file is: an EntryNotFoundError that lists what was looked for."""
    BlipConfig().save_pretrained(tmp_path)
    original = hub_error(getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError), 404)

    def download(repo_id, filename, **kwargs):
        if filename == "config.json":
            return str(tmp_path / "config.json")
        raise original

    monkeypatch.setattr("huggingface_hub.hf_hub_download", download)
    with pytest.raises(errors.EntryNotFoundError, match=f"no weights found in {REPO}: expected one of") as info:
        model_class(framework).from_pretrained(REPO)
    assert isinstance(info.value, OSError) and info.value.__cause__ is original
