"""blip_torch generation options against `transformers` (4.57.6; 4.56.2 for group beam search).

Golden data: tests/tools/make_generation_golden.py. Ids must be equal; scores, logits and
transition scores within the parity bound.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.compare import assert_outputs_close
from tests.helpers.generation_cases import ALL_CASES, CAPTION, GenCase
from tests.helpers.generation_runs import INPUTS, compared, load, outputs
from tests.helpers.golden import load_npz

GOLDEN = {**load_npz("generation.npz"), **load_npz("generation_group.npz")}


def golden_for(case: GenCase) -> dict[str, np.ndarray]:
    prefix = f"{case.name}::"
    found = {key[len(prefix) :]: value for key, value in GOLDEN.items() if key.startswith(prefix)}
    assert found, f"no golden outputs for {case.name}: run tests/tools/make_generation_golden.py"
    return compared(case, found)


@pytest.mark.parametrize("case", ALL_CASES, ids=[case.name for case in ALL_CASES])
def test_generate_matches_transformers(case):
    expected = golden_for(case)
    ours = compared(case, outputs("pt", case))
    assert set(ours) >= set(expected), f"missing outputs {set(expected) - set(ours)}"
    if "sequences" in expected:
        assert ours["sequences"].shape == expected["sequences"].shape, (ours["sequences"], expected["sequences"])
        assert np.array_equal(ours["sequences"], expected["sequences"]), (ours["sequences"], expected["sequences"])
    assert_outputs_close({k: ours[k] for k in expected}, expected)


def test_group_beam_indices_give_the_sequence_scores():
    """Our beam indices are rows of `scores` (transformers 4.56's group ones are not): transition scores
    summed and length-normalised give `sequences_scores`."""
    case = next(c for c in ALL_CASES if c.name == "group_scores")
    found = outputs("pt", case)
    lengths = (found["beam_indices"] >= 0).sum(1)
    summed = found["transition"].sum(1) / lengths ** case.kwargs.get("length_penalty", 1.0)
    np.testing.assert_allclose(summed, found["sequences_scores"], atol=1e-4)


def test_no_repeat_ngram_changes_a_repetitive_caption():
    """The usual cure for BLIP's repeated words: no bigram twice (the issue's TypeError)."""
    model = load("pt", CAPTION, "eos")
    pixels = torch.from_numpy(INPUTS["pixel_values"])
    plain = model.generate(pixels, max_new_tokens=12)[1].tolist()
    cured = model.generate(pixels, max_new_tokens=12, no_repeat_ngram_size=2)[1].tolist()
    bigrams = list(zip(cured[:-1], cured[1:], strict=True))
    assert plain.count(20) > 10 and len(set(bigrams)) == len(bigrams) and cured[-1] == 3  # ends with [SEP]


def test_streamer_gets_the_prompt_then_each_token():
    class Recorder:
        def __init__(self):
            self.parts, self.ended = [], False

        def put(self, value):
            self.parts.append(value.tolist())

        def end(self):
            self.ended = True

    model, streamer = load("pt", CAPTION, "varied"), Recorder()
    pixels = torch.from_numpy(INPUTS["pixel_values_1"])
    ids = model.generate(pixels, max_new_tokens=5, streamer=streamer)
    assert streamer.ended and streamer.parts[0] == [[97]]
    assert [part[0] for part in streamer.parts[1:]] == ids[0, 1:].tolist()


def test_max_time_zero_stops_after_one_token():
    model = load("pt", CAPTION, "varied")
    pixels = torch.from_numpy(INPUTS["pixel_values"])
    assert model.generate(pixels, max_time=0.0).shape == (2, 2)
    assert model.generate(pixels, max_time=0.0, num_beams=2).shape == (2, 2)


def test_compute_transition_scores_of_greedy_is_the_chosen_score():
    model = load("pt", CAPTION, "varied")
    out = model.generate(torch.from_numpy(INPUTS["pixel_values"]), max_new_tokens=4, **PIX_OUT)
    picked = torch.stack(out.scores, 1).gather(2, out.sequences[:, 1:, None])[..., 0]
    assert torch.equal(model.compute_transition_scores(out.sequences, out.scores), picked)


PIX_OUT = {"output_scores": True, "return_dict_in_generate": True}
