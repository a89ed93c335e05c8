"""blip_tf generation beyond the twins: dtypes of ids, seeds, inputs left untouched, errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import blip_tf
from tests.helpers.checkpoints import write_generation_checkpoint
from tests.helpers.golden import load_npz

GOLDEN = load_npz("models.npz")
PIXELS = GOLDEN["input::pixel_values"]


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    folder = write_generation_checkpoint("BlipForConditionalGeneration", "varied", tmp_path_factory.mktemp("cap"))
    return blip_tf.TFBlipForConditionalGeneration.from_pretrained(folder)


def test_int32_and_int64_prompts_give_the_same_ids(captioner):
    prompt = np.array([[97, 11, 23, 3]] * 2)
    a = captioner.generate(PIXELS, input_ids=prompt.astype(np.int32), max_new_tokens=5)
    b = captioner.generate(PIXELS, input_ids=tf.constant(prompt, tf.int64), max_new_tokens=5)
    assert a.dtype == tf.int32 and np.array_equal(a.numpy(), b.numpy())
    assert a.shape == (2, 8)  # BOS, 2 prompt words ([SEP] dropped), 5 new tokens


def test_default_is_20_new_tokens_as_in_pytorch(captioner):
    assert captioner.generate(PIXELS, min_new_tokens=20).shape == (2, 21)


def test_sampling_is_seeded(captioner):
    kwargs = {
        "do_sample": True,
        "top_k": 12,
        "top_p": 0.9,
        "temperature": 1.4,
        "max_new_tokens": 8,
        "num_return_sequences": 2,
    }
    a = captioner.generate(PIXELS, seed=5, **kwargs).numpy()
    b = captioner.generate(PIXELS, seed=5, **kwargs).numpy()
    c = captioner.generate(PIXELS, seed=6, **kwargs).numpy()
    assert a.shape[0] == 4 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert captioner.generate(PIXELS, seed=1, do_sample=True, num_beams=2, max_new_tokens=4).shape[0] == 2


def test_inputs_are_not_modified(captioner):
    prompt = np.array([[97, 11, 23, 3], [97, 40, 3, 0]])
    mask = np.array([[1, 1, 1, 1], [1, 1, 1, 0]])
    before = (PIXELS.copy(), prompt.copy(), mask.copy())
    captioner.generate(PIXELS, input_ids=prompt, attention_mask=mask, num_beams=2, max_new_tokens=3)
    assert all(np.array_equal(x, y) for x, y in zip(before, (PIXELS, prompt, mask), strict=True))


def test_return_dict_in_generate(captioner):
    out = captioner.generate(
        PIXELS, num_beams=3, num_return_sequences=2, max_new_tokens=4, return_dict_in_generate=True
    )
    assert out.sequences.shape[0] == 4 and out.sequences_scores.shape == (4,)


def test_bad_arguments_are_named(captioner):
    with pytest.raises(TypeError, match="unexpected arguments \\['beam'\\]"):
        captioner.generate(PIXELS, beam=2)
    with pytest.raises(ValueError, match="shape \\(batch, 3, height, width\\)"):
        captioner.generate(np.zeros((1, 40, 40, 3), np.float32))


def test_bfloat16_smoke(tiny_checkpoints):
    model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(
        tiny_checkpoints["BlipForConditionalGeneration"], dtype="bfloat16"
    )
    assert model.dtype == "bfloat16"
    out = model(pixel_values=PIXELS, input_ids=GOLDEN["input::input_ids_full"])
    reference = blip_tf.TFBlipForConditionalGeneration.from_pretrained(tiny_checkpoints["BlipForConditionalGeneration"])
    expected = reference(pixel_values=PIXELS, input_ids=GOLDEN["input::input_ids_full"]).logits.numpy()
    got = tf.cast(out.logits, tf.float32).numpy()
    assert np.isfinite(got).all() and np.abs(got - expected).max() < 0.1 * np.abs(expected).max()
