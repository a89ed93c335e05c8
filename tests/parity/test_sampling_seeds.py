"""`generate(..., sampling_seeds=[...])`: per-image seeded sampling, the same ids through blip_torch and
blip_tf, whatever the batch's other images or the image's position, and refused where it cannot apply.

The embedded demo models (float32) caption and answer held-out demo images; the "varied" generation-test
checkpoint (tests/helpers/generation_runs.py) adds a decoder whose distributions are flat enough that
sampling differs from greedy at most steps. Temperatures above 1 keep the confident demo models sampling.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import tensorflow as tf
import torch

import blip_tf
import blip_torch
from blip_core.demo.tasks import ANSWERER, CAPTIONER, DEMO_MODELS_DIR, held_out
from blip_core.generation.sampling import pick_index, row_uniforms
from blip_core.processing.processor import BlipProcessor
from blip_tf.generation import compiled_functions
from blip_tf.generation import seeded_pick as tf_pick
from blip_torch.generation import seeded_pick as pt_pick
from tests.helpers.generation_cases import CAPTION
from tests.helpers.generation_runs import INPUTS
from tests.helpers.generation_runs import load as load_generation_model

FRAMEWORKS = ("pt", "tf")
HELD = held_out(8)
SEEDS = [11, 0, 7, 2**40, 5, 3, 123456789, 42]


@functools.cache
def demo(framework: str, name: str):
    package, prefix = (blip_torch, "") if framework == "pt" else (blip_tf, "TF")
    return getattr(package, prefix + name).from_pretrained(DEMO_MODELS_DIR / name)


@functools.cache
def processor() -> BlipProcessor:
    return BlipProcessor.from_pretrained(DEMO_MODELS_DIR / CAPTIONER)


def pixels(indices) -> np.ndarray:
    return processor()(images=[HELD.images[i] for i in indices], return_tensors="np")["pixel_values"]


def as_framework(framework: str, value):
    return torch.from_numpy(value) if framework == "pt" and isinstance(value, np.ndarray) else value


def ids(framework: str, model, *args, **kwargs) -> np.ndarray:
    """`model.generate` on NumPy inputs, as int64 NumPy ids."""
    args = [as_framework(framework, value) for value in args]
    kwargs = {key: as_framework(framework, value) for key, value in kwargs.items()}
    out = model.generate(*args, **kwargs)
    return np.asarray(out.numpy() if hasattr(out, "numpy") else out, np.int64)


def caption(framework: str, images, seeds, **kwargs) -> np.ndarray:
    kwargs = {"do_sample": True, "max_new_tokens": 12, "sampling_seeds": seeds, **kwargs}
    return ids(framework, demo(framework, CAPTIONER), pixels(images), **kwargs)


def questions(indices) -> dict[str, np.ndarray]:
    encoded = processor()(text=[HELD.questions[i] for i in indices], padding=True, return_tensors="np")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def answer(framework: str, indices, seeds, **kwargs) -> np.ndarray:
    kwargs = {"do_sample": True, "max_new_tokens": 8, "sampling_seeds": seeds, **questions(indices), **kwargs}
    return ids(framework, demo(framework, ANSWERER), pixel_values=pixels(indices), **kwargs)


def prompts(texts) -> dict[str, np.ndarray]:
    encoded = processor()(text=texts, padding=True, return_tensors="np")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def varied(framework: str, seeds, **kwargs) -> np.ndarray:
    model = load_generation_model(framework, CAPTION, "varied")
    kwargs = {"do_sample": True, "max_new_tokens": 10, "sampling_seeds": seeds, **kwargs}
    return ids(framework, model, INPUTS["pixel_values"], **kwargs)


def trimmed(row: np.ndarray, pad: int = 0) -> list[int]:
    """A row without its trailing padding (its length depends on the other rows of the batch)."""
    values = row.tolist()
    while values and values[-1] == pad:
        values.pop()
    return values


CASES = {  # name -> (framework -> ids) of one call
    "top_p": lambda fw: caption(fw, range(8), SEEDS, top_p=0.9, temperature=1.8),
    "top_k_temperature": lambda fw: caption(fw, range(8), SEEDS, top_k=20, temperature=1.5),
    "three_per_image": lambda fw: caption(fw, range(4), SEEDS[:4], num_return_sequences=3, temperature=1.6),
    "prompt": lambda fw: caption(fw, range(3), SEEDS[:3], temperature=2.0, **prompts(["a picture of"] * 3)),
    "padded_prompts": lambda fw: caption(
        fw, range(3), SEEDS[:3], top_p=0.95, temperature=2.0, **prompts(["two", "a picture of", "three green"])
    ),
    "vqa": lambda fw: answer(fw, range(6), SEEDS[:6], temperature=2.0, top_k=30),
    "vqa_three_per_question": lambda fw: answer(fw, range(3), SEEDS[:3], temperature=2.0, num_return_sequences=3),
    "varied_history": lambda fw: varied(fw, [3, 4], top_k=8, no_repeat_ngram_size=2, num_return_sequences=2),
    "varied_typical": lambda fw: varied(fw, [9, 9], typical_p=0.8, min_new_tokens=4),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_seeded_sampling_gives_the_same_ids_in_both_trees(name):
    found_pt, found_tf = CASES[name]("pt"), CASES[name]("tf")
    assert np.array_equal(found_pt, found_tf), (found_pt, found_tf)
    assert found_pt.shape[1] > 2


def test_seeded_sampling_samples():
    """Other seeds give other ids in most rows (fixed seeds: the counts are facts of these models)."""
    for framework in FRAMEWORKS:
        first = caption(framework, range(8), SEEDS, temperature=2.0)
        assert np.array_equal(first, caption(framework, range(8), SEEDS, temperature=2.0))
        other = caption(framework, range(8), [seed + 1 for seed in SEEDS], temperature=2.0)
        differing = sum(trimmed(a) != trimmed(b) for a, b in zip(first, other, strict=True))
        assert differing >= 6, (framework, differing)
        three = caption(framework, range(4), SEEDS[:4], num_return_sequences=3, temperature=2.0)
        distinct = [len({tuple(trimmed(row)) for row in three[i * 3 : i * 3 + 3]}) for i in range(4)]
        assert sum(distinct) >= 10, (framework, distinct)  # an image's three rows differ from each other
        greedy = ids(framework, demo(framework, CAPTIONER), pixels(range(8)), max_new_tokens=12)
        assert sum(trimmed(a) != trimmed(b) for a, b in zip(first, greedy, strict=True)) >= 6


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_seed_argument_is_ignored_with_sampling_seeds(framework):
    first = caption(framework, range(4), SEEDS[:4], temperature=2.0, seed=1)
    assert np.array_equal(first, caption(framework, range(4), SEEDS[:4], temperature=2.0, seed=2))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_row_does_not_depend_on_its_batch(framework):
    """Image 0 with seed 77 alongside three other images, first or third: the same rows (same batch shape)."""
    kwargs = {"num_return_sequences": 2, "temperature": 2.0, "top_p": 0.95}
    first = caption(framework, [0, 1, 2, 3], [77, 1, 2, 3], **kwargs)
    third = caption(framework, [4, 5, 0, 6], [4, 5, 77, 6], **kwargs)
    assert [trimmed(row) for row in first[:2]] == [trimmed(row) for row in third[4:6]]
    assert trimmed(first[0]) != trimmed(first[1])
    swapped = caption(framework, [0, 1, 2, 3], [77, 2, 1, 3], **kwargs)  # other images' seeds do not matter
    assert [trimmed(row) for row in first[:2]] == [trimmed(row) for row in swapped[:2]]
    assert [trimmed(row) for row in first[2:4]] != [trimmed(row) for row in swapped[2:4]]


def test_tf_compiles_one_loop_for_all_seed_values():
    model = demo("tf", CAPTIONER)
    caption("tf", range(4), [1, 2, 3, 4], temperature=2.0, max_new_tokens=7)
    functions = compiled_functions(model.text_decoder)
    before = (set(functions), dict(functions.traces))
    caption("tf", range(4), [9, 8, 7, 6], temperature=2.0, max_new_tokens=7)
    assert (set(functions), dict(functions.traces)) == before


def test_both_trees_pick_the_token_numpy_picks():
    """The inverse-CDF pick on processed scores (-inf where top-k/top-p removed a token): the same token as
    `pick_index` in float64, a removed token never, at the sampled frequencies."""
    rng = np.random.default_rng(5)
    scores = rng.normal(0.0, 2.0, (20000, 7)).astype(np.float32)
    scores[:, [1, 5]] = -np.inf
    uniforms = row_uniforms([21], 1, 20000)[0]
    shifted = np.exp(scores.astype(np.float64) - scores.max(-1, keepdims=True))
    expected = pick_index(shifted / shifted.sum(-1, keepdims=True), uniforms)
    found_pt = pt_pick(torch.from_numpy(scores), torch.from_numpy(uniforms)).numpy()
    found_tf = tf_pick(tf.constant(scores), tf.constant(uniforms)).numpy()
    assert np.array_equal(found_pt, expected) and np.array_equal(found_tf, expected)
    fixed = np.array([[np.log(0.5), -np.inf, np.log(0.2), np.log(0.3)]], np.float32)  # top-k removed token 1
    repeated = np.repeat(fixed, 20000, 0)
    counts = np.bincount(pt_pick(torch.from_numpy(repeated), torch.from_numpy(uniforms)).numpy(), minlength=4)
    assert counts[1] == 0
    error = 4 * np.sqrt(np.array([0.25, 0.0, 0.16, 0.21]) / 20000)
    assert np.all(np.abs(counts / 20000 - [0.5, 0.0, 0.2, 0.3]) <= error + 1e-12), counts
    found_pt = pt_pick(torch.from_numpy(repeated), torch.from_numpy(uniforms)).numpy()
    assert np.array_equal(tf_pick(tf.constant(repeated), tf.constant(uniforms)).numpy(), found_pt)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_beams": 2}, ValueError, "sampling_seeds needs do_sample=True and num_beams=1"),
        ({"do_sample": False}, ValueError, "sampling_seeds needs do_sample=True and num_beams=1"),
        ({"sampling_seeds": [1, 2]}, ValueError, "sampling_seeds holds 2 seeds but the batch has 3 images"),
        ({"sampling_seeds": [1, 2, -3]}, ValueError, r"sampling_seeds\[2\] must be non-negative"),
        ({"sampling_seeds": [1, 2.5, 3]}, TypeError, r"sampling_seeds\[1\] must be an int"),
        ({"sampling_seeds": "123"}, TypeError, "sequence of ints"),
    ],
)
def test_bad_sampling_seeds_are_refused(framework, kwargs, error, match):
    with pytest.raises(error, match=match):
        caption(framework, range(3), [1, 2, 3], **kwargs)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_vqa_counts_seeds_per_question(framework):
    with pytest.raises(ValueError, match="sampling_seeds holds 3 seeds but the batch has 2 questions"):
        answer(framework, range(2), [1, 2, 3])
    model = demo(framework, ANSWERER)
    nothing = {"input_ids": np.zeros((0, 4), np.int64), "pixel_values": np.zeros((0, 3, 80, 80), np.float32)}
    assert ids(framework, model, do_sample=True, sampling_seeds=[], **nothing).shape == (0, 1)
    with pytest.raises(ValueError, match="sampling_seeds holds 1 seeds but the batch has 0 questions"):
        ids(framework, model, do_sample=True, sampling_seeds=[4], **nothing)
