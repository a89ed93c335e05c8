"""`blip finetune --framework tf`: two MirroredStrategy replicas (the CPU split into two logical devices) on a global
batch of 8 take the same SGD steps as one device on the same 8 examples (captioning, VQA, retrieval with gathered
negatives), and a run killed after step 2 of 4 resumes to the parameters of an uninterrupted run. Each run is a
fresh process: logical devices are fixed when TensorFlow starts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.finetune_runs import MODELS, SGD, command, killed_run, largest_difference, run, weights, write_data

pytestmark = pytest.mark.xdist_group("finetune_tf")  # subprocess-heavy: one worker runs them in turn


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("finetune_data"))


def losses(folder) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("task", ["caption", "retrieval"])  # VQA: the in-process twins
def test_two_replicas_take_one_device_steps(task, data, tmp_path):
    options = ["--framework", "tf", "--max-steps", "3", "--batch-size", "8", *SGD]
    if task == "retrieval":
        options.append("--gather-negatives")
    run(command(task, data, tmp_path / "two", *options, "--devices", "2"))
    run(command(task, data, tmp_path / "one", *options))
    difference, name = largest_difference(weights(tmp_path / "two"), weights(tmp_path / "one"))
    assert difference < 1e-5, f"{name} differs by {difference}"
    moved, _ = largest_difference(weights(tmp_path / "one"), weights(MODELS[task]))
    assert moved > 1e-3
    np.testing.assert_allclose(losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=1e-5)


def test_accumulation_takes_the_same_steps(data, tmp_path):
    """Two replicas x two micro-batches of 2 == one device with the whole batch of 8."""
    options = ["--framework", "tf", "--max-steps", "2", "--batch-size", "8", *SGD]
    run(command("caption", data, tmp_path / "split", *options, "--devices", "2", "--gradient-accumulation-steps", "2"))
    run(command("caption", data, tmp_path / "one", *options))
    difference, name = largest_difference(weights(tmp_path / "split"), weights(tmp_path / "one"))
    assert difference < 1e-5, f"{name} differs by {difference}"


def test_killed_run_resumes_to_the_uninterrupted_parameters(data, tmp_path):
    """AdamW with warm-up and a cosine schedule, two replicas, SIGKILL right after step 2's checkpoint."""
    options = {"max_steps": 4, "batch_size": 8, "save_steps": 2, "learning_rate": 1e-3, "warmup_steps": 1,
               "devices": 2, "logging_steps": 1}  # fmt: skip
    flags = ["--framework", "tf", "--devices", "2", "--max-steps", "4", "--batch-size", "8", "--save-steps", "2",
             "--learning-rate", "1e-3", "--warmup-steps", "1", "--logging-steps", "1"]  # fmt: skip
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run(command("caption", data, whole, *flags))
    assert killed_run("caption", data, resumed, 2, "tf", **options) == -9
    assert sorted(p.name for p in resumed.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-000002"]
    run(command("caption", data, resumed, *flags, "--resume"))
    difference, name = largest_difference(weights(resumed), weights(whole))
    assert difference < 1e-6, f"{name} differs by {difference}"
    moved, _ = largest_difference(weights(whole), weights(resumed / "checkpoint-000002"))
    assert moved > 1e-4
    assert [json.loads(line)["step"] for line in (resumed / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_keras_under_torchrun_is_refused(data, tmp_path, monkeypatch):
    """torchrun starts PyTorch workers: each Keras process would train alone into the same folder."""
    from blip_core.finetune import finetune

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        finetune("caption", MODELS["caption"], data, tmp_path / "run", framework="tf", max_steps=1)
    assert not (tmp_path / "run").exists()
