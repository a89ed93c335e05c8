"""Hub resolution: local folders, a folder laid out as the Hub cache (offline), weight precedence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blip_core.checkpoint import open_weights
from blip_core.hub import HubError, resolve_file, resolve_weights
from blip_core.safetensors_io import write_safetensors

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
    with pytest.raises(HubError, match="config.json not found in Hub repo"):
        resolve_file("Salesforce/not-cached", "config.json", cache_dir=tmp_path)


def test_unreachable_network_is_one_sentence(tmp_path, monkeypatch):
    from huggingface_hub import errors

    import blip_core.hub as hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def unreachable(*args, **kwargs):
        raise errors.LocalEntryNotFoundError("connection refused")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", unreachable)
    with pytest.raises(hub.HubUnreachableError, match="cannot reach the Hugging Face Hub"):
        resolve_weights("Salesforce/blip-image-captioning-base", cache_dir=tmp_path)
