"""Generation options through blip_torch and blip_tf: ids identical, scores/logits/transition scores close.

The same cases as the golden tests (tests/helpers/generation_cases.py); runs are cached per
process, so the TF golden test reuses these runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch

from tests.helpers.compare import assert_outputs_close
from tests.helpers.generation_cases import ALL_CASES, CAPTION, COMBINED_CASES, VQA, tf_params
from tests.helpers.generation_runs import INPUTS, finite, load, outputs

TWIN_CASES = [case for case in ALL_CASES if "max_time" not in case.kwargs]


@pytest.mark.parametrize("case", tf_params(TWIN_CASES) + [pytest.param(c, id=c.name) for c in COMBINED_CASES])
def test_generation_twins_agree(case):
    found_pt, found_tf = outputs("pt", case), outputs("tf", case)
    if case.first_step_only:  # sampled ids differ (two random generators); the first step's scores do not
        found_pt, found_tf = ({"scores0": found["scores"][:1]} for found in (found_pt, found_tf))
    ours_pt = {k: finite(v) if v.dtype.kind == "f" else v for k, v in found_pt.items()}
    ours_tf = {k: finite(v) if v.dtype.kind == "f" else v for k, v in found_tf.items()}
    assert set(ours_pt) == set(ours_tf)
    if "sequences" in ours_pt:
        assert np.array_equal(ours_pt["sequences"], ours_tf["sequences"]), (ours_pt["sequences"], ours_tf["sequences"])
    assert_outputs_close(ours_tf, ours_pt)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_beams": 3, "encoder_repetition_penalty": 0.6, **{"output_scores": True, "return_dict_in_generate": True}},
        {"num_beams": 2, "num_return_sequences": 2, "encoder_no_repeat_ngram_size": 1, "max_new_tokens": 6},
    ],
    ids=["encoder_repetition_penalty", "encoder_no_repeat_ngram"],
)
def test_prompt_processors_act_on_every_beam(kwargs):
    """`transformers` applies `encoder_repetition_penalty` to the first B rows of the B*K beam rows only (its
    prompt tensor is not expanded to the beams); here every beam of an image sees its own prompt."""
    pixels, prompt = INPUTS["pixel_values"], INPUTS["prompt_words"]
    model_pt, model_tf = load("pt", CAPTION, "varied"), load("tf", CAPTION, "varied")
    out_pt = model_pt.generate(torch.from_numpy(pixels), input_ids=torch.from_numpy(prompt), **kwargs)
    out_tf = model_tf.generate(pixels, input_ids=prompt, **kwargs)
    if "output_scores" in kwargs:
        first = out_pt.scores[0].view(2, 3, -1)  # step 0: the beams of an image are copies
        assert torch.equal(first[:, 0], first[:, 1]) and torch.equal(first[:, 0], first[:, 2])
        assert_outputs_close(finite(np.stack([s.numpy() for s in out_tf.scores])), finite(np.stack(out_pt.scores)))
        out_pt, out_tf = out_pt.sequences, out_tf.sequences
    else:
        new = out_pt.numpy()[:, prompt.shape[1] - 1 :]
        for row, tokens in enumerate(new):  # no token of the row's own prompt comes back
            assert not set(prompt[row // 2, :-1].tolist()) & set(tokens.tolist()), (row, tokens)
    assert np.array_equal(out_pt.numpy(), out_tf.numpy())


def test_vqa_group_beam_twins_with_padded_questions():
    """Padded questions: each row equals its single-question result, in both trees."""
    ids, mask = INPUTS["input_ids"], INPUTS["attention_mask"]
    kwargs = {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 0.8, "max_new_tokens": 6}
    model_pt, model_tf = load("pt", VQA, "eos"), load("tf", VQA, "eos")
    pixels = INPUTS["pixel_values"]
    batch_pt = model_pt.generate(torch.from_numpy(ids), torch.from_numpy(pixels), torch.from_numpy(mask), **kwargs)
    batch_tf = model_tf.generate(ids, pixels, attention_mask=mask, **kwargs)
    assert np.array_equal(batch_pt.numpy(), batch_tf.numpy())
    single = model_pt.generate(torch.from_numpy(ids[1:, :5]), torch.from_numpy(pixels[1:]), **kwargs)
    assert batch_pt[1, : single.shape[1]].tolist() == single[0].tolist()


def test_sampled_rows_are_seeded_in_both_trees():
    kwargs = {"do_sample": True, "typical_p": 0.7, "no_repeat_ngram_size": 2, "max_new_tokens": 6, "seed": 3}
    pixels = INPUTS["pixel_values"]
    model_pt, model_tf = load("pt", CAPTION, "varied"), load("tf", CAPTION, "varied")
    first_pt = model_pt.generate(torch.from_numpy(pixels), **kwargs)
    assert torch.equal(first_pt, model_pt.generate(torch.from_numpy(pixels), **kwargs))
    first_tf = model_tf.generate(pixels, **kwargs)
    assert tf.reduce_all(first_tf == model_tf.generate(pixels, **kwargs))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"no_repeat_ngram_size": 2, "bad_words_ids": [[91, 84]], "encoder_no_repeat_ngram_size": 3},
        {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0, "max_new_tokens": 7},
        {"num_beams": 2, "sequence_bias": {(84, 91): -2.0}, "forced_eos_token_id": 3, "max_length": 9},
    ],
    ids=["history_processors", "group_beam", "bias_forced_eos_max_length"],
)
def test_padded_prompts_agree_across_frameworks(kwargs):
    """Prompts of different lengths, right-padded: per-row lengths, histories and budgets in both trees."""
    pixels = np.concatenate([INPUTS["pixel_values"], INPUTS["pixel_values_1"]])
    ids = np.array([[97, 91, 84, 65, 3], [97, 84, 3, 0, 0], [97, 65, 91, 3, 0]], np.int64)
    mask = (ids != 0).astype(np.int64)
    model_pt, model_tf = load("pt", CAPTION, "varied"), load("tf", CAPTION, "varied")
    out_pt = model_pt.generate(
        torch.from_numpy(pixels), input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), **kwargs
    )
    out_tf = model_tf.generate(pixels, input_ids=ids, attention_mask=mask, **kwargs)
    assert np.array_equal(out_pt.numpy(), out_tf.numpy()), (out_pt, out_tf)
