"""Hub resolution: local folders, a folder laid out as the Hub cache (offline), weight precedence, and the
exception types programs written for `transformers` catch (tests/golden/hub_errors.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from huggingface_hub import errors

import blip_core.io.hub as hub
from blip_core import BlipConfig, BlipImageProcessor
from blip_core.checkpoints.safetensors_io import write_safetensors
from blip_core.checkpoints.sources import open_weights
from blip_core.io.hub import HubError, resolve_file, resolve_weights
from tests.helpers.hub_errors import REMOTE_ENTRY, REPO, assert_types_of_transformers, hub_error

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_hub_cache(cache, repo_id, files: dict[str, bytes], revision="main"):
    """Lay out `files` as huggingface_hub's cache holds a downloaded snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    blobs = repo / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / revision).write_text(COMMIT)
    for index, (name, data) in enumerate(files.items()):
        blob = blobs / f"blob{index:04d}"
        blob.write_bytes(data)
        (snapshot / name).symlink_to(blob)
    return snapshot


def test_local_folder_precedence(tmp_path):
    (tmp_path / "tf_model.h5").write_bytes(b"h5")
    assert resolve_weights(tmp_path).format == "h5"
    (tmp_path / "pytorch_model.bin").write_bytes(b"bin")
    assert resolve_weights(tmp_path).format == "bin"
    write_safetensors(tmp_path / "model.safetensors", {"x": np.zeros(2, np.float32)})
    files = resolve_weights(tmp_path)
    assert files.format == "safetensors" and files.paths == (tmp_path / "model.safetensors",)
    assert resolve_weights(tmp_path, formats=("h5",)).format == "h5"


def test_sharded_index(tmp_path):
    write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"a": np.ones(2, np.float32)})
    write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"b": np.zeros(3, np.float32)})
    index = {
        "metadata": {},
        "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"},
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    files = resolve_weights(tmp_path)
    assert [p.name for p in files.paths] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    source = open_weights(files)
    assert sorted(source.keys()) == ["a", "b"] and source.get("b").shape == (3,)


def test_bad_index_is_named(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../evil.safetensors"}}))
    with pytest.raises(ValueError, match="invalid shard file name"):
        resolve_weights(tmp_path)


def test_missing_things_are_one_sentence(tmp_path):
    with pytest.raises(HubError, match="no weights found in"):
        resolve_weights(tmp_path)
    with pytest.raises(HubError, match="config.json not found in folder"):
        resolve_file(tmp_path, "config.json")
    with pytest.raises(HubError, match="neither an existing folder nor a Hub repo id"):
        resolve_file("./no/such/../folder", "config.json")


def test_hub_id_from_offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    buffer = tmp_path / "w.safetensors"
    write_safetensors(buffer, {"x": np.arange(3, dtype=np.float32)})
    make_hub_cache(
        tmp_path / "cache",
        "Salesforce/blip-test",
        {"config.json": b"{}", "pytorch_model.bin": b"not used", "model.safetensors": buffer.read_bytes()},
    )
    files = resolve_weights("Salesforce/blip-test", cache_dir=tmp_path / "cache")
    assert files.format == "safetensors"
    assert open_weights(files).get("x").tolist() == [0.0, 1.0, 2.0]
    assert resolve_file("Salesforce/blip-test", "config.json", cache_dir=tmp_path / "cache").read_bytes() == b"{}"


def test_hub_id_falls_back_to_bin_when_cache_lacks_safetensors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_hub_cache(tmp_path / "cache", "Salesforce/blip-old", {"pytorch_model.bin": b"zip"})
    files = resolve_weights("Salesforce/blip-old", cache_dir=tmp_path / "cache")
    assert files.format == "bin"


def test_hub_id_not_cached_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        hub.HubNotCachedError, match="config.json of 'Salesforce/not-cached' is not in the local"
    ) as info:
        resolve_file("Salesforce/not-cached", "config.json", cache_dir=tmp_path)
    assert isinstance(info.value, errors.LocalEntryNotFoundError) and isinstance(info.value, OSError)
    assert isinstance(info.value.__cause__, errors.LocalEntryNotFoundError)  # huggingface_hub's own, chained
    assert resolve_file("Salesforce/not-cached", "config.json", cache_dir=tmp_path, required=False) is None
    with pytest.raises(hub.HubNotCachedError, match="no weights found in Salesforce/not-cached"):
        resolve_weights("Salesforce/not-cached", cache_dir=tmp_path)


def test_unreachable_network_is_one_sentence(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_reachable", lambda endpoint: False)

    def unreachable(*args, **kwargs):
        raise errors.LocalEntryNotFoundError("connection refused")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", unreachable)
    with pytest.raises(hub.HubUnreachableError, match="cannot reach the Hugging Face Hub") as info:
        resolve_weights("Salesforce/blip-image-captioning-base", cache_dir=tmp_path)
    assert isinstance(info.value, errors.LocalEntryNotFoundError) and isinstance(info.value, OSError)
    with pytest.raises(hub.HubUnreachableError):  # not a miss: the file may exist, so never None
        resolve_file("Salesforce/blip-image-captioning-base", "tokenizer.json", required=False)


# -- exception types ------------------------------------------------------------------------------------------

# case -> the huggingface_hub error the mocked download raises, its HTTP status, our message.
HUB_CASES = {
    "repository_not_found": (errors.RepositoryNotFoundError, 404, "neither a local folder nor a model repository"),
    "gated_repo": (errors.GatedRepoError, 403, "is a gated repo: accept its conditions"),
    "revision_not_found": (errors.RevisionNotFoundError, 404, "revision 'v9' does not exist in"),
    "entry_not_found": (REMOTE_ENTRY, 404, "config.json not found in Hub repo"),
    "http_error": (errors.HfHubHTTPError, 500, "the Hub refused 'config.json'"),
    "not_cached_or_unreachable": (errors.LocalEntryNotFoundError, 0, "is not in the local Hugging Face cache"),
}


@pytest.mark.parametrize("case", sorted(HUB_CASES))
def test_hub_misses_raise_the_huggingface_hub_types(case, monkeypatch):
    cls, status, message = HUB_CASES[case]
    original = hub_error(cls, status)

    def download(*args, **kwargs):
        raise original

    monkeypatch.setattr("huggingface_hub.hf_hub_download", download)
    with pytest.raises(HubError, match=message) as info:
        BlipConfig.from_pretrained(REPO, revision="v9" if case == "revision_not_found" else None)
    assert isinstance(info.value, cls) and info.value.__cause__ is original
    assert_types_of_transformers(info.value, case)
    if status:  # the HTTP details stay readable, as on huggingface_hub's own error
        assert info.value.response.status_code == status
    assert REPO in str(info.value)


def test_missing_file_in_a_hub_repo_is_a_miss_when_optional(monkeypatch):
    def download(repo_id, filename, **kwargs):
        raise hub_error(REMOTE_ENTRY, 404)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", download)
    assert resolve_file(REPO, "generation_config.json", required=False) is None
    with pytest.raises(hub.HubEntryNotFoundError, match=f"no weights found in {REPO}: expected one of") as info:
        resolve_weights(REPO)
    assert isinstance(info.value, errors.EntryNotFoundError) and isinstance(info.value.__cause__, REMOTE_ENTRY)


def test_repo_level_errors_are_never_taken_for_a_missing_file(monkeypatch):
    def download(*args, **kwargs):
        raise hub_error(errors.RepositoryNotFoundError, 404)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", download)
    with pytest.raises(errors.RepositoryNotFoundError):
        resolve_file(REPO, "tokenizer.json", required=False)
    with pytest.raises(errors.RepositoryNotFoundError):
        resolve_weights(REPO)


@pytest.mark.parametrize(
    "case, load",
    [
        ("config_missing_path", lambda tmp: BlipConfig.from_pretrained(tmp / "no" / "such")),
        ("model_missing_absolute_path", lambda tmp: resolve_file(tmp / "no" / "such", "config.json")),
        ("model_missing_relative_path", lambda tmp: resolve_file("./no-such-folder", "config.json")),
        ("model_file_path", lambda tmp: resolve_file(tmp / "config_only" / "config.json", "config.json")),
        ("model_empty_folder", lambda tmp: resolve_weights(tmp / "empty")),
        ("model_folder_without_weights", lambda tmp: resolve_weights(tmp / "config_only")),
        ("processor_empty_folder", lambda tmp: BlipImageProcessor.from_pretrained(tmp / "empty")),
    ],
)
def test_local_misses_raise_what_transformers_programs_catch(case, load, tmp_path):
    (tmp_path / "empty").mkdir()
    BlipConfig().save_pretrained(tmp_path / "config_only")
    with pytest.raises(OSError) as info:
        load(tmp_path)
    assert_types_of_transformers(info.value, case)
    assert isinstance(info.value, HubError)
    assert str(tmp_path) in str(info.value) or "no-such-folder" in str(info.value)  # names the path


def test_missing_local_path_is_also_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither an existing folder nor a Hub repo id"):
        resolve_file(tmp_path / "nope", "config.json")
    with pytest.raises(FileNotFoundError, match=f"config.json not found in folder {tmp_path}"):
        resolve_file(tmp_path, "config.json")


def test_connection_lost_during_download_is_unreachable_not_offline(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_reachable", lambda endpoint: True)

    def download(repo_id, filename, local_files_only=False, **kwargs):
        assert not local_files_only
        raise errors.LocalEntryNotFoundError("connection reset while locating the file")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", download)
    with pytest.raises(hub.HubUnreachableError, match="cannot reach the Hugging Face Hub to fetch 'config.json'"):
        resolve_file(REPO, "config.json")
