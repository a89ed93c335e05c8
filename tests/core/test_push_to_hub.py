"""`push_to_hub` and `save_pretrained(..., push_to_hub=True)` for every saveable object, in both trees, against a
recorded stand-in for `huggingface_hub.HfApi` (no network): the commit holds exactly the files `save_pretrained`
writes, byte for byte, and a model card; `transformers`' arguments reach the Hub calls; offline and unreachable
are `OSError`s that leave nothing written."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
from huggingface_hub import errors as hf_errors

import blip_tf
import blip_torch
from blip_core import BlipConfig, BlipImageProcessor, BlipProcessor, BlipTokenizer, GenerationConfig
from blip_core.io.hub_upload import HubOfflineError, HubUploadError
from blip_core.processing.tokenization import BUNDLED_VOCAB_FILE

CAPTION = "BlipForConditionalGeneration"


class RecordingHub:
    """Stands in for `HfApi`: records each call; `create_commit` reads the files while they exist."""

    calls: list[tuple[str, dict]] = []
    commits: list[dict] = []
    card: str | None = None  # the repo's README.md; None: the repo has none
    fail: BaseException | None = None

    def __init__(self, token=None) -> None:
        self.calls.append(("HfApi", {"token": token}))

    def create_repo(self, repo_id, **kwargs):
        if self.fail is not None:
            raise self.fail
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return SimpleNamespace(repo_id=repo_id)

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

    def hf_hub_download(self, repo_id, filename, revision=None):
        if self.card is None:
            raise hf_errors.EntryNotFoundError(f"{filename} not in {repo_id}")
        path = Path(self.folder) / filename
        path.write_text(self.card)
        return str(path)

    def create_commit(self, repo_id, operations, **kwargs):
        files = {}
        for operation in operations:
            source = operation.path_or_fileobj
            files[operation.path_in_repo] = source if isinstance(source, bytes) else Path(source).read_bytes()
        self.commits.append({"repo_id": repo_id, "files": files, **kwargs})
        return f"commit {len(self.commits)}"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingHub)
    monkeypatch.setattr(RecordingHub, "calls", [])
    monkeypatch.setattr(RecordingHub, "commits", [])
    monkeypatch.setattr(RecordingHub, "folder", tmp_path, raising=False)
    return RecordingHub


def saveables(tiny_checkpoints) -> dict[str, object]:
    processor = BlipProcessor(BlipImageProcessor(size=48), BlipTokenizer(vocab_file=BUNDLED_VOCAB_FILE))
    return {
        "config": BlipConfig(text_config={"hidden_size": 32}),
        "generation config": GenerationConfig(num_beams=3),
        "processor": processor,
        "tokenizer": processor.tokenizer,
        "image processor": processor.image_processor,
        "torch model": blip_torch.BlipForConditionalGeneration.from_pretrained(tiny_checkpoints[CAPTION]),
        "tf model": blip_tf.TFBlipForConditionalGeneration.from_pretrained(tiny_checkpoints[CAPTION]),
    }


MESSAGES = {
    "config": "Upload config",
    "generation config": "Upload config",
    "processor": "Upload processor",
    "tokenizer": "Upload tokenizer",
    "image processor": "Upload processor",
    "torch model": "Upload BlipForConditionalGeneration",  # transformers: "Upload model" only for names with "Model"
    "tf model": "Upload TFBlipForConditionalGeneration",
}


def written(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_object_pushes_exactly_what_save_pretrained_writes(hub, tiny_checkpoints, tmp_path):
    for name, owner in saveables(tiny_checkpoints).items():
        expected = f"commit {len(hub.commits) + 1}"
        assert owner.push_to_hub("me/blip-test") == expected, name
        commit = hub.commits[-1]
        owner.save_pretrained(tmp_path / name)
        card = commit["files"].pop("README.md").decode()
        assert commit["files"] == written(tmp_path / name) and commit["files"], name
        assert commit["commit_message"] == MESSAGES[name] and commit["repo_id"] == "me/blip-test", name
        assert "library_name: transformers" in card and "# blip-test" in card
    assert {"model.safetensors", "config.json", "generation_config.json"} == set(commit["files"])  # the TF model


def test_transformers_arguments_reach_the_hub(hub, tiny_checkpoints, tmp_path):
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(tiny_checkpoints[CAPTION])
    hub.card = "---\ntags:\n- mine\n---\n\n# Kept card\n"
    model.push_to_hub(
        "me/blip-test",
        commit_message="epoch 3",
        private=True,
        token="hf_x",
        create_pr=True,
        revision="dev",
        commit_description="notes",
        tags=["blip", "mine"],
        max_shard_size="100KB",
        safe_serialization=False,
    )
    commit = hub.commits[-1]
    assert hub.calls[:3] == [
        ("HfApi", {"token": "hf_x"}),
        ("create_repo", {"repo_id": "me/blip-test", "token": "hf_x", "private": True, "exist_ok": True}),
        ("create_branch", {"repo_id": "me/blip-test", "branch": "dev", "token": "hf_x", "exist_ok": True}),
    ]
    assert (commit["commit_message"], commit["commit_description"]) == ("epoch 3", "notes")
    assert (commit["create_pr"], commit["revision"], commit["token"]) == (True, "dev", "hf_x")
    shards = sorted(name for name in commit["files"] if name.startswith("pytorch_model"))
    assert len(shards) > 2 and "pytorch_model.bin.index.json" in shards  # the save options were applied
    card = commit["files"]["README.md"].decode()
    assert "# Kept card" in card and card.count("- mine") == 1 and "- blip" in card


def test_save_pretrained_push_uploads_only_the_files_it_wrote(hub, tiny_checkpoints, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(tiny_checkpoints[CAPTION])
    model.save_pretrained(folder, push_to_hub=True, repo_id="me/out", commit_message="first", private=False)
    commit = hub.commits[-1]
    assert sorted(commit["files"]) == ["README.md", "config.json", "generation_config.json", "model.safetensors"]
    assert commit["commit_message"] == "first" and (folder / "notes.txt").read_text() == "mine"
    assert commit["files"]["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    BlipConfig().save_pretrained(tmp_path / "named", push_to_hub=True)  # repo id: the folder's name
    assert hub.commits[-1]["repo_id"] == "named" and sorted(hub.commits[-1]["files"]) == ["README.md", "config.json"]
    model.save_pretrained(tmp_path / "worker", push_to_hub=True, is_main_process=False)  # only the main uploads
    assert len(hub.commits) == 2 and not (tmp_path / "worker").exists()


def test_use_temp_dir_false_keeps_the_folder(hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    GenerationConfig(num_beams=2).push_to_hub("me/gen", use_temp_dir=False)
    assert (tmp_path / "gen" / "generation_config.json").read_bytes() == hub.commits[-1]["files"][
        "generation_config.json"
    ]


def test_offline_unreachable_and_bad_arguments_are_clear_errors(hub, monkeypatch, tmp_path):
    config = BlipConfig()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubOfflineError, match="cannot push BlipConfig to 'me/c': HF_HUB_OFFLINE is set") as caught:
        config.push_to_hub("me/c")
    assert isinstance(caught.value, OSError) and isinstance(caught.value, hf_errors.OfflineModeIsEnabled)
    with pytest.raises(OSError, match="HF_HUB_OFFLINE"):
        config.save_pretrained(tmp_path / "kept", push_to_hub=True)
    assert not (tmp_path / "kept").exists() and hub.calls == []  # nothing written, the Hub never called
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(RecordingHub, "fail", ConnectionError("no route to host"))
    with pytest.raises(HubUploadError, match="the Hub is unreachable .no route to host") as caught:
        config.push_to_hub("me/c")
    assert isinstance(caught.value, OSError) and isinstance(caught.value.__cause__, ConnectionError)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['privat'\]"):
        config.push_to_hub("me/c", privat=True)
    with pytest.raises(ValueError, match="repo_id must be a repo name"):
        config.push_to_hub("")
    with (
        pytest.raises(ValueError, match="`token` and `use_auth_token` are both specified"),
        pytest.warns(FutureWarning),
    ):
        config.push_to_hub("me/c", token="a", use_auth_token="b")
