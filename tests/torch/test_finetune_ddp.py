"""`blip finetune` under torchrun: two gloo workers on a global batch of 8 take the same SGD steps as one process on
the same 8 examples (captioning; retrieval with gathered negatives, and without them a different objective), and a
run killed after step 2 (or 3) of 4 resumes to the parameters of an uninterrupted run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.finetune_runs import (
    MODELS,
    SGD,
    TORCHRUN,
    command,
    killed_run,
    largest_difference,
    run,
    weights,
    write_data,
)

pytestmark = pytest.mark.xdist_group("finetune_torch")  # subprocess-heavy: one worker runs them in turn


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("finetune_data"))


@pytest.mark.parametrize("task", ["caption", "retrieval"])  # VQA: the in-process twins
def test_two_workers_take_one_process_steps(task, data, tmp_path):
    options = ["--max-steps", "3", "--batch-size", "8", *SGD]
    if task == "retrieval":
        options.append("--gather-negatives")
    run(command(task, data, tmp_path / "two", *options), TORCHRUN)
    run(command(task, data, tmp_path / "one", *options))
    two, one = weights(tmp_path / "two"), weights(tmp_path / "one")
    difference, name = largest_difference(two, one)
    assert difference < 1e-5, f"{name} differs by {difference}"
    moved, _ = largest_difference(one, weights(MODELS[task]))
    assert moved > 1e-3  # the comparison is between models that trained
    if task == "retrieval":  # without --gather-negatives each worker's negatives are its own 4 pairs: another loss
        run(command(task, data, tmp_path / "local", *options[:-1]), TORCHRUN)
        difference, _ = largest_difference(weights(tmp_path / "local"), one)
        assert difference > 1e-4
    records = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    one_records = [json.loads(line) for line in (tmp_path / "one" / "log.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([r["loss"] for r in records], [r["loss"] for r in one_records], rtol=1e-5)


@pytest.mark.parametrize(
    "workers, killed_after", [pytest.param(1, 3, marks=pytest.mark.slow), (2, 2)]  # one process: --run-slow (CI time)
)
def test_killed_run_resumes_to_the_uninterrupted_parameters(workers, killed_after, data, tmp_path):
    """AdamW (its moments must come back too) with a cosine schedule and warm-up, killed by SIGKILL right after
    step 2 (its checkpoint) or step 3 (done again from checkpoint 2), then resumed with --resume: the parameters of
    a run that was never interrupted, with the same number of workers (AdamW turns the last-bit differences of
    another summation order into steps of about the learning rate on parameters whose true gradient is 0, so other
    worker counts are compared on SGD above), and one log line per step."""
    launcher = TORCHRUN if workers == 2 else None
    options = {"max_steps": 4, "batch_size": 8, "save_steps": 2, "learning_rate": 1e-3, "warmup_steps": 1,
               "logging_steps": 1}  # fmt: skip
    flags = ["--max-steps", "4", "--batch-size", "8", "--save-steps", "2", "--learning-rate", "1e-3",
             "--warmup-steps", "1", "--logging-steps", "1"]  # fmt: skip
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run(command("caption", data, whole, *flags), launcher)
    assert killed_run("caption", data, resumed, killed_after, "pt", launcher, **options) != 0
    assert sorted(p.name for p in resumed.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-000002"]
    assert not (resumed / "model.safetensors").exists()
    run(command("caption", data, resumed, *flags, "--resume"), launcher)
    difference, name = largest_difference(weights(resumed), weights(whole))
    assert difference < 1e-6, f"{name} differs by {difference}"
    moved, _ = largest_difference(weights(whole), weights(resumed / "checkpoint-000002"))
    assert moved > 1e-4  # steps 3 and 4 changed the weights after the checkpoint
    steps = [json.loads(line)["step"] for line in (resumed / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
