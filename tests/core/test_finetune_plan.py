"""The framework-neutral parts of `blip finetune`: options, the step plan, learning rates, batches and their loss
normalisers, the output folder's rules, the data readers and the command's errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from blip_core import BlipProcessor
from blip_core.cli.main import main
from blip_core.finetune.data import read_examples
from blip_core.training.options import FinetuneOptions
from blip_core.training.plan import StepPlan, learning_rates, total_steps
from blip_core.training.run_folder import checkpoint_name, prepare_output_dir, read_state, write_state
from blip_core.training.step_batches import StepBatches
from tests.helpers.finetune_runs import MODELS, write_data


def options(**values) -> FinetuneOptions:
    base = {"task": "caption", "model": "m", "data": "d", "output_dir": "o", "max_steps": 4}
    return FinetuneOptions(**{**base, **values}).check()


@pytest.mark.parametrize("world, accumulation", [(1, 1), (2, 1), (2, 2), (4, 2)])
def test_workers_share_every_global_batch(world, accumulation):
    plan = StepPlan(num_examples=37, batch_size=8, seed=3, world_size=world, accumulation=accumulation)
    alone = StepPlan(num_examples=37, batch_size=8, seed=3)
    for step in range(10):  # 4 steps per epoch (5 examples dropped each epoch): across epochs 0-2
        parts = [micro for rank in range(world) for micro in plan.micro_batches(step, rank)]
        assert all(len(part) == 8 // (world * accumulation) for part in parts)
        np.testing.assert_array_equal(np.concatenate(parts), alone.step_indices(step))
    epoch = np.concatenate([alone.step_indices(step) for step in range(4)])
    assert len(set(epoch.tolist())) == 32  # an epoch never repeats an example
    assert not np.array_equal(alone.step_indices(0), alone.step_indices(4))  # each epoch is reshuffled


def test_plan_refuses_what_cannot_split():
    with pytest.raises(ValueError, match="fewer than one batch"):
        StepPlan(num_examples=5, batch_size=8, seed=0)
    with pytest.raises(ValueError, match="split evenly"):
        StepPlan(num_examples=20, batch_size=6, seed=0, world_size=4)


@pytest.mark.parametrize("kind", ["constant", "linear", "cosine"])
def test_learning_rates_warm_up_then_follow_the_schedule(kind):
    rates = learning_rates(options(lr_scheduler_type=kind, learning_rate=2e-4, warmup_steps=4), 20)
    np.testing.assert_allclose(rates[:4], [0, 5e-5, 1e-4, 1.5e-4])
    progress = (np.arange(4, 20) - 4) / 16
    expected = {
        "constant": np.full(16, 2e-4),
        "linear": 2e-4 * (1 - progress),
        "cosine": 2e-4 * 0.5 * (1 + np.cos(math.pi * progress)),
    }[kind]
    np.testing.assert_allclose(rates[4:], expected, rtol=1e-12)


def test_epochs_give_steps():
    assert total_steps(options(max_steps=None, epochs=2.5, batch_size=8), 37) == 10


@pytest.mark.parametrize(
    "values, message",
    [
        ({"task": "detect"}, "task"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"max_steps": None}, "exactly one of max_steps and epochs"),
        ({"epochs": 1.0}, "exactly one of max_steps and epochs"),
        ({"gradient_accumulation_steps": 3}, "multiple of gradient_accumulation_steps"),
        ({"gather_negatives": True}, "retrieval"),
        ({"devices": 2}, "torchrun"),
        ({"optimizer": "adam"}, "optimizer"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"resume": True, "force": True}, "not both"),
        ({"eval_steps": 5}, "eval_steps needs eval_data"),
    ],
)
def test_bad_options_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        options(**values)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("plan_data"), count=12)


@pytest.fixture(scope="module")
def processor():
    return BlipProcessor.from_pretrained(MODELS["caption"])


def test_caption_batches_divide_by_the_steps_label_tokens(folder, processor):
    examples = read_examples("caption", folder)
    settings = options(batch_size=8, prompt="a picture of")
    plan = StepPlan(len(examples), 8, settings.seed, world_size=2)
    batches = StepBatches(processor, examples, settings, plan)
    halves = [batches.batch(0, rank, 0) for rank in range(2)]
    labels = np.concatenate([half["labels"] for half in halves])
    assert all(half["normalizer"][0] == (labels[:, 1:] != -100).sum() for half in halves)
    assert halves[0]["input_ids"].shape == halves[1]["input_ids"].shape  # one fixed length for the whole run
    assert (halves[0]["input_ids"][:, 0] == processor.tokenizer.bos_token_id).all()
    prompt_tokens = 1 + len(processor.tokenizer("a picture of", add_special_tokens=False)["input_ids"])
    assert (labels[:, :prompt_tokens] == -100).all()


def test_vqa_batches_weigh_the_annotators_answers(folder, processor):
    examples = read_examples("vqa", folder)
    settings = options(task="vqa", batch_size=4)
    batches = StepBatches(processor, examples, settings, StepPlan(len(examples), 4, settings.seed))
    batch = batches.batch(0, 0, 0)
    assert batches.answer_slots == 2 and batch["decoder_input_ids"].shape[0] == 8
    np.testing.assert_allclose(batch["weights"].reshape(4, 2), [[0.75, 0.25]] * 4)
    assert batch["normalizer"][0] == 4


def test_retrieval_draws_do_not_depend_on_the_split(folder, processor):
    examples = read_examples("retrieval", folder)
    settings = options(task="retrieval", batch_size=8)
    one = StepBatches(processor, examples, settings, StepPlan(len(examples), 8, settings.seed))
    two = StepBatches(processor, examples, settings, StepPlan(len(examples), 8, settings.seed, world_size=2))
    joined = np.concatenate([two.batch(1, rank, 0)["uniforms"] for rank in range(2)])
    np.testing.assert_array_equal(joined, one.batch(1, 0, 0)["uniforms"])


def test_output_folder_rules(tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--resume .* --force"):
        prepare_output_dir(options(output_dir=str(output)))
    checkpoint = output / checkpoint_name(2)
    checkpoint.mkdir()
    write_state(checkpoint, {"step": 2, "options": options(output_dir=str(output)).to_json()})
    assert prepare_output_dir(options(output_dir=str(output), resume=True)) == checkpoint
    with pytest.raises(ValueError, match="learning_rate 1e-05 -> 0.001"):
        prepare_output_dir(options(output_dir=str(output), resume=True, learning_rate=1e-3))
    assert prepare_output_dir(options(output_dir=str(output), force=True)) is None
    assert not checkpoint.exists() and (output / "notes.txt").read_text() == "mine"  # only the run's own files go
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):  # a mistyped folder loses nothing
        prepare_output_dir(options(output_dir=str(tmp_path / "fresh"), resume=True))
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        prepare_output_dir(options(output_dir=str(tmp_path / "file")))


@pytest.mark.parametrize("text", ["not json", "[]", '{"version": 1, "step": "2", "options": {}}'])
def test_damaged_trainer_state_is_a_clear_error(tmp_path, text):
    (tmp_path / "trainer_state.json").write_text(text)
    with pytest.raises(ValueError, match="trainer_state.json"):
        read_state(tmp_path)


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"file": "00000.png", "question": "what?"}', "expected"),
        ('{"file": "00000.png", "question": "what?", "answers": []}', "expected"),
        ('{"file": "gone.png", "question": "what?", "answer": "x"}', "does not exist"),
        ('{"file": "00000.png", "question": "q", "answers": ["a", "b"], "weights": [1]}', "weights"),
        ("{broken", "line 1"),
    ],
)
def test_bad_question_lines_are_named(folder, tmp_path, line, message):
    (tmp_path / "00000.png").symlink_to(folder / "00000.png")
    (tmp_path / "questions.jsonl").write_text(line + "\n")
    with pytest.raises(ValueError, match=message):
        read_examples("vqa", tmp_path)


def test_parquet_training_data(folder, tmp_path):
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as parquet

    records = [json.loads(line) for line in (folder / "captions.jsonl").read_text().splitlines()]
    table = pyarrow.table(
        {"image": [(folder / r["file"]).read_bytes() for r in records], "caption": [r["caption"] for r in records]}
    )
    parquet.write_table(table, tmp_path / "train.parquet")
    examples = read_examples("caption", tmp_path / "train.parquet")
    assert examples.texts == [r["caption"] for r in records]
    assert len(set(examples.image_keys)) == len(records)


def test_command_errors_are_one_line(folder, tmp_path, capsys):
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("x")
    argv = ["finetune", "caption", "--model", str(MODELS["caption"]), "--data", str(folder), "--output-dir",
            str(output), "--max-steps", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("blip finetune: --output-dir") and "--force" in error and "\n" not in error
    assert main([*argv[:5], str(tmp_path / "missing"), *argv[6:]]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert (output / "keep.txt").read_text() == "x"


def test_webdataset_training_data(folder, tmp_path):
    """img2dataset's layout: one `<key>.png` and `<key>.txt` pair per record in each `.tar` shard."""
    import io
    import tarfile

    pytest.importorskip("webdataset")
    records = [json.loads(line) for line in (folder / "captions.jsonl").read_text().splitlines()]
    with tarfile.open(tmp_path / "00000.tar", "w", format=tarfile.USTAR_FORMAT) as archive:
        for number, record in enumerate(records):
            image, text = (folder / record["file"]).read_bytes(), record["caption"].encode()
            for suffix, data in ((".png", image), (".txt", text)):
                info = tarfile.TarInfo(f"{number:05d}{suffix}")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    examples = read_examples("retrieval", tmp_path / "00000.tar")
    assert examples.texts == [r["caption"] for r in records]
    assert examples.images[0] == (folder / records[0]["file"]).read_bytes()


def test_a_checkpoint_of_another_step_is_refused(tmp_path):
    checkpoint = tmp_path / checkpoint_name(4)
    checkpoint.mkdir()
    write_state(checkpoint, {"step": 999, "options": options(output_dir=str(tmp_path)).to_json()})
    with pytest.raises(ValueError, match="says step 999"):
        prepare_output_dir(options(output_dir=str(tmp_path), resume=True))


def test_the_output_folder_lock(tmp_path):
    import os

    from blip_core.training.run_folder import LOCK_FILE, RunLock

    (tmp_path / LOCK_FILE).write_text(str(os.getppid()))  # a live process holds it
    with pytest.raises(FileExistsError, match=f"process {os.getppid()}"):
        RunLock(tmp_path).acquire()
    (tmp_path / LOCK_FILE).write_text("999999999")  # a killed run's
    lock = RunLock(tmp_path)
    lock.acquire()
    assert (tmp_path / LOCK_FILE).read_text() == str(os.getpid())
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()


def test_answer_accuracy_rules():
    from blip_core.finetune.evaluation import answer_accuracy

    assert answer_accuracy(["blue"], [["blue"]]) == 1.0  # one reference: exact match
    assert answer_accuracy(["Two."], [["2"]]) == 1.0  # VQA's normalisation
    assert answer_accuracy(["a", "other"], [["a", "a", "a", "other"]] * 2) == pytest.approx((1 + 1 / 3) / 2)
    assert answer_accuracy(["y"], [["x", "y"]], [[0.8, 0.2]]) == pytest.approx(0.25)


def test_long_texts_are_cut_with_a_warning(folder, processor):
    examples = read_examples("caption", folder)
    settings = options(batch_size=4, max_length=5)
    with pytest.warns(UserWarning, match="longer than max_length=5"):
        batches = StepBatches(processor, examples, settings, StepPlan(len(examples), 4, settings.seed))
    assert batches.text_length == 5
