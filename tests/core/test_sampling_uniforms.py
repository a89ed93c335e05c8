"""Per-image seeded sampling's framework-neutral part: `key_seed`, `row_uniforms`, the inverse-CDF pick, and
the validation of `sampling_seeds` (blip_core.generation.sampling and options)."""

from __future__ import annotations

import numpy as np
import pytest

from blip_core.generation.options import GenerationOptions
from blip_core.generation.rules import GenerationArgumentError
from blip_core.generation.sampling import (
    as_sampling_seeds,
    check_sampling_seeds,
    key_seed,
    pick_index,
    row_uniforms,
)


def test_key_seed_is_stable_and_63_bit():
    # Values computed once (sha256 of "seed\0key"): a run resumed in another process gets the same seeds.
    assert key_seed(0, "shard-00000/000042") == 1584014014210443526
    assert key_seed(7, "a") == 174570108252232934
    assert key_seed(2**70, "ü/é") == 3995420327679528728
    assert key_seed(np.int64(7), "a") == 174570108252232934
    seeds = {key_seed(seed, key) for seed in range(3) for key in ("a", "b", "ab", "")}
    assert len(seeds) == 12 and all(0 <= value < 2**63 for value in seeds)


@pytest.mark.parametrize(
    ("seed", "key", "error"),
    [(-1, "a", ValueError), (1.0, "a", TypeError), (True, "a", TypeError), (1, b"a", TypeError), (1, 3, TypeError)],
)
def test_key_seed_refuses_bad_input(seed, key, error):
    with pytest.raises(error, match="seed|key"):
        key_seed(seed, key)


def test_row_uniforms_layout_and_values():
    found = row_uniforms([3, 9, 3], 2, 5)
    assert found.shape == (6, 5) and found.dtype == np.float64
    assert found.min() > 0.0 and found.max() <= 1.0
    # Fixed values (Philox keyed by [seed, repeat]): the same on every machine and NumPy with this bit stream.
    assert row_uniforms([3], 1, 2)[0].tolist() == [0.9547068626486541, 0.8725411232397488]
    assert np.array_equal(found[0:2], found[4:6])  # image-major; the same seed gives the same rows
    assert not np.array_equal(found[0], found[1]) and not np.array_equal(found[0], found[2])
    for image, seed in enumerate([3, 9, 3]):
        for repeat in range(2):
            alone = row_uniforms([seed], 2, 5)[repeat]
            assert np.array_equal(found[image * 2 + repeat], alone)


def test_row_uniforms_are_prefix_stable():
    long = row_uniforms([5, 6], 3, 40)
    assert np.array_equal(row_uniforms([5, 6], 3, 7), long[:, :7])
    assert np.array_equal(row_uniforms([5, 6], 1, 40), long[[0, 3]])  # row r does not depend on `repeats`
    assert row_uniforms([], 3, 4).shape == (0, 4) and row_uniforms([1], 2, 0).shape == (2, 0)


def test_inverse_cdf_pick_follows_the_distribution():
    probs = np.array([0.1, 0.0, 0.25, 0.05, 0.6, 0.0])
    uniforms = row_uniforms([11], 1, 20000)[0]
    picked = pick_index(np.broadcast_to(probs, (20000, 6)), uniforms)
    counts = np.bincount(picked, minlength=6)
    assert counts[1] == 0 and counts[5] == 0  # zero probability: never picked
    error = np.sqrt(probs * (1 - probs) / 20000)
    assert np.all(np.abs(counts / 20000 - probs) <= 4 * error + 1e-12), counts


def test_inverse_cdf_pick_at_the_edges():
    probs = np.array([[0.0, 0.5, 0.5, 0.0], [0.0, 0.5, 0.5, 0.0], [0.0, 0.5, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0]])
    picked = pick_index(probs, np.array([1e-300, 0.5, 1.0, 1.0]))
    assert picked.tolist() == [1, 1, 2, 0]  # the first token whose cumulative probability reaches u * total
    unnormalised = pick_index(np.array([[2.0, 0.0, 6.0]]), np.array([0.3]))
    assert unnormalised.tolist() == [2]  # 0.3 * 8 = 2.4 > 2


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ([1, -2], ValueError, r"sampling_seeds\[1\] must be non-negative"),
        ([1, 2.0], TypeError, r"sampling_seeds\[1\] must be an int"),
        ([True], TypeError, r"sampling_seeds\[0\] must be an int"),
        ("12", TypeError, "sequence of ints"),
        ({1, 2}, TypeError, "sequence of ints"),
        (5, TypeError, "sequence of ints"),
        (np.zeros((2, 2), np.int64), TypeError, "1-D"),
    ],
)
def test_bad_sampling_seeds_are_refused(value, error, match):
    with pytest.raises(error, match=match):
        as_sampling_seeds(value, True, 1)
    with pytest.raises(error, match=match):
        GenerationOptions.from_kwargs(do_sample=True, sampling_seeds=value)


@pytest.mark.parametrize("kwargs", [{"do_sample": False}, {"do_sample": True, "num_beams": 2}, {}])
def test_sampling_seeds_need_sampling_without_beams(kwargs):
    with pytest.raises(GenerationArgumentError, match="sampling_seeds needs do_sample=True and num_beams=1"):
        GenerationOptions.from_kwargs(sampling_seeds=[1, 2], **kwargs)
    assert issubclass(GenerationArgumentError, ValueError)


def test_sampling_seeds_resolve_to_a_tuple_and_key_the_compiled_loop_by_presence():
    options = GenerationOptions.from_kwargs(do_sample=True, sampling_seeds=np.array([4, 0, 2**40]), seed=3)
    assert options.sampling_seeds == (4, 0, 2**40) and all(type(seed) is int for seed in options.sampling_seeds)
    other = GenerationOptions.from_kwargs(do_sample=True, sampling_seeds=(8, 9), seed=3)
    plain = GenerationOptions.from_kwargs(do_sample=True, seed=3)
    assert options.static_key == other.static_key and options.static_key.sampling_seeds == ()
    assert plain.static_key != options.static_key and plain.static_key.sampling_seeds is None
    assert GenerationOptions.from_kwargs(do_sample=True, sampling_seeds=[]).sampling_seeds == ()


def test_seed_count_is_checked():
    check_sampling_seeds(None, 3)
    check_sampling_seeds((1, 2, 3), 3)
    with pytest.raises(ValueError, match="sampling_seeds holds 2 seeds but the batch has 3 images \\(one seed each\\)"):
        check_sampling_seeds((1, 2), 3)
