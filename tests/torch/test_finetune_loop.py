"""`finetune(framework="pt")` in one process: gradient accumulation and gradient checkpointing take the same steps,
bf16 autocast trains, epochs count steps, held-out metrics are logged, and a damaged checkpoint is a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blip_core.finetune import finetune
from blip_core.training.run_folder import OPTIMIZER_FILE, read_arrays, write_arrays
from tests.helpers.finetune_runs import MODELS, largest_difference, weights, write_data

SGD = {"optimizer": "sgd", "learning_rate": 0.05, "weight_decay": 0.0, "lr_scheduler_type": "constant"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("loop_data"), count=16)


def train(data, output, task="caption", **options):
    options = {"max_steps": 2, "batch_size": 8, "progress": False, **options}
    return finetune(task, MODELS[task], data, output, **options)


@pytest.mark.parametrize("variant", [{"gradient_accumulation_steps": 4}, {"gradient_checkpointing": True}])
def test_memory_savers_take_the_same_steps(variant, data, tmp_path):
    train(data, tmp_path / "plain", **SGD)
    train(data, tmp_path / "saver", **SGD, **variant)
    difference, name = largest_difference(weights(tmp_path / "saver"), weights(tmp_path / "plain"))
    assert difference < 1e-5, f"{name} differs by {difference}"


def test_bf16_autocast_trains_close_to_float32(data, tmp_path):
    train(data, tmp_path / "fp32", **SGD)
    history = train(data, tmp_path / "bf16", bf16=True, **SGD)
    assert all(np.isfinite(record["loss"]) for record in history)
    bf16, fp32 = weights(tmp_path / "bf16"), weights(tmp_path / "fp32")
    moved, _ = largest_difference(fp32, weights(MODELS["caption"]))
    difference, _ = largest_difference(bf16, fp32)
    assert difference < 0.1 * moved  # bf16 rounding (8 mantissa bits), on every CPU, against the whole update


def test_epochs_and_held_out_metrics(data, tmp_path):
    history = train(data, tmp_path / "run", max_steps=None, epochs=1.5, eval_data=data, eval_steps=1,
                    logging_steps=1)  # fmt: skip
    train_records = [r for r in history if "loss" in r]
    evaluations = [r for r in history if "eval_exact_match" in r]
    assert [r["step"] for r in train_records] == [1, 2, 3]  # 16 examples // 8 = 2 steps per epoch
    assert [r["step"] for r in evaluations] == [0, 1, 2, 3]  # 0: before training
    assert evaluations[0]["eval_exact_match"] > 0.9  # the demo captioner knows these scenes
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert logged == history
    assert_tensorboard(tmp_path / "run" / "runs", [r["loss"] for r in train_records])


def assert_tensorboard(folder, losses: list[float]) -> None:
    """The run's TensorBoard events hold its losses (`train/loss`) and held-out metrics (`eval/...`)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    tags = events.Tags()
    if "train/loss" in tags["scalars"]:  # torch.utils.tensorboard writes scalars
        values = [event.value for event in events.Scalars("train/loss")]
    else:  # tf.summary writes tensors
        values = [float(np.asarray(event.tensor_proto.float_val or [0])[0]) for event in events.Tensors("train/loss")]
    np.testing.assert_allclose(values, losses, rtol=1e-6)
    assert any(tag.startswith("eval/") for tag in tags["scalars"] + tags["tensors"])


@pytest.mark.parametrize(
    "task, metric, floor", [("vqa", "eval_answer_accuracy", 0.9), ("retrieval", "eval_r_mean", 50)]
)
def test_task_metrics(task, metric, floor, data, tmp_path):
    history = train(data, tmp_path / task, task=task, max_steps=1, learning_rate=1e-6, eval_data=data)
    assert history[-1][metric] > floor


def test_damaged_optimizer_state_is_refused(data, tmp_path):
    output = tmp_path / "run"
    train(data, output, max_steps=2, save_steps=1)
    checkpoint = output / "checkpoint-000002"
    arrays = read_arrays(checkpoint / OPTIMIZER_FILE)
    name = next(key for key in arrays if key.endswith("/exp_avg") and arrays[key].ndim == 2)
    arrays[name] = arrays[name][:1]
    write_arrays(checkpoint / OPTIMIZER_FILE, arrays)
    with pytest.raises(ValueError, match="another model"):
        train(data, output, max_steps=2, save_steps=1, resume=True)


def test_resume_on_other_data_is_refused(data, tmp_path):
    output = tmp_path / "run"
    train(data, output, max_steps=2, save_steps=1)
    more = write_data(tmp_path / "more", count=24)
    with pytest.raises(ValueError, match="16 examples, the data now holds 24"):
        train(more, output, max_steps=2, save_steps=1, resume=True)


@pytest.mark.parametrize(
    "damage, message",
    [
        ({"torch": np.zeros(7, np.uint8)}, "does not fit"),
        ({"numpy": np.zeros(3, np.float32)}, "no torch generator state"),
    ],
)
def test_damaged_generator_state_is_refused(damage, message, data, tmp_path):
    output = tmp_path / "run"
    train(data, output, max_steps=2, save_steps=1)
    write_arrays(output / "checkpoint-000002" / "rng-0.safetensors", damage)
    with pytest.raises(ValueError, match=message):
        train(data, output, max_steps=2, save_steps=1, resume=True)


def test_save_total_limit_keeps_the_newest(data, tmp_path):
    train(data, tmp_path / "run", max_steps=3, batch_size=4, save_steps=1, save_total_limit=2)
    kept = sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("checkpoint-"))
    assert kept == ["checkpoint-000002", "checkpoint-000003"]


def test_a_diverging_run_stops(data, tmp_path):
    with pytest.raises(ValueError, match="diverged"):
        train(data, tmp_path / "run", max_steps=4, optimizer="sgd", learning_rate=1e9, lr_scheduler_type="constant")
