"""blip_torch generation beyond the oracle: batch invariance, no mutation, sampling, lengths, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import blip_torch
from tests.helpers.checkpoints import write_generation_checkpoint
from tests.helpers.model_cases import BOS, PAD, SEP, make_inputs

INPUTS = make_inputs()


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    folder = write_generation_checkpoint("BlipForConditionalGeneration", "varied", tmp_path_factory.mktemp("cap"))
    return blip_torch.BlipForConditionalGeneration.from_pretrained(folder)


@pytest.fixture(scope="module")
def answerer(tmp_path_factory):
    folder = write_generation_checkpoint("BlipForQuestionAnswering", "eos", tmp_path_factory.mktemp("vqa"))
    return blip_torch.BlipForQuestionAnswering.from_pretrained(folder)


def strip_left_padding(row: np.ndarray) -> list[int]:
    values = row.tolist()
    while values and values[0] == PAD:
        values.pop(0)
    return values


def assert_row_extends(batch_row: list[int], single: list[int], where: str) -> None:
    """A batch row is the single-row result followed only by padding (PAD, or EOS from beams)."""
    assert batch_row[: len(single)] == single, where
    assert all(t in (PAD, SEP) for t in batch_row[len(single) :]), where


PROMPTS = [[BOS, 11, 23, 40, SEP], [BOS, 40, SEP], [BOS, 7, 8, 9, 10, 12, SEP]]


def padded(prompts, side):
    width = max(map(len, prompts))
    ids = np.full((len(prompts), width), PAD, np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(prompts):
        if side == "right":
            ids[i, : len(row)], mask[i, : len(row)] = row, 1
        else:
            ids[i, width - len(row) :], mask[i, width - len(row) :] = row, 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"num_beams": 3, "max_new_tokens": 9},
        {"no_repeat_ngram_size": 2, "bad_words_ids": [[91, 84]], "encoder_no_repeat_ngram_size": 3},
        {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0, "max_new_tokens": 7},
    ],
    ids=["greedy", "beam3", "history_processors", "group_beam"],
)
def test_padded_prompt_rows_equal_single_rows(captioner, side, kwargs):
    pixels = torch.from_numpy(np.concatenate([INPUTS["pixel_values"], INPUTS["pixel_values_1"]]))
    ids, mask = padded(PROMPTS, side)
    batch = captioner.generate(pixels, input_ids=ids, attention_mask=mask, **kwargs).numpy()
    for i, prompt in enumerate(PROMPTS):
        single = captioner.generate(pixels[i : i + 1], input_ids=torch.tensor([prompt]), **kwargs).numpy()[0]
        assert_row_extends(strip_left_padding(batch[i]), single.tolist(), f"row {i}")


def test_padded_questions_equal_single_questions(answerer):
    pixels = torch.from_numpy(INPUTS["pixel_values"])
    questions = [[BOS - 1, 12, 13, 14, 15, 16, 17, SEP], [BOS - 1, 40, SEP]]
    ids, mask = padded(questions, "right")
    for kwargs in ({}, {"num_beams": 3, "max_new_tokens": 8}):
        batch = answerer.generate(ids, pixels, attention_mask=mask, **kwargs).numpy()
        for i, question in enumerate(questions):
            single = answerer.generate(torch.tensor([question]), pixels[i : i + 1], **kwargs).numpy()[0]
            assert_row_extends(batch[i].tolist(), single.tolist(), f"row {i} {kwargs}")


def test_vqa_forward_masks_question_padding(answerer):
    """REFERENCE §0.1: the decoder's cross-attention mask is applied (4.57 lets the padding leak in)."""
    pixels = torch.from_numpy(INPUTS["pixel_values"])
    ids, mask = padded([[BOS - 1, 12, 13, 14, 15, 16, 17, SEP], [BOS - 1, 40, SEP]], "right")
    answers = torch.from_numpy(INPUTS["answers"])
    with torch.no_grad():
        batch = answerer(input_ids=ids, pixel_values=pixels, attention_mask=mask, decoder_input_ids=answers).logits
        single = answerer(input_ids=ids[1:, :3], pixel_values=pixels[1:], decoder_input_ids=answers[1:]).logits
        leaky = answerer(input_ids=ids, pixel_values=pixels, decoder_input_ids=answers).logits
    assert torch.allclose(batch[1], single[0], atol=1e-5)
    assert (leaky[1] - single[0]).abs().max() > 1e-3


def test_generate_never_mutates_inputs(captioner):
    pixels = torch.from_numpy(INPUTS["pixel_values"].copy())
    ids, mask = padded(PROMPTS[:2], "right")
    before = (pixels.clone(), ids.clone(), mask.clone())
    captioner.generate(pixels, input_ids=ids, attention_mask=mask, num_beams=2, max_new_tokens=4)
    assert all(torch.equal(a, b) for a, b in zip(before, (pixels, ids, mask), strict=True))


def test_int32_ids_and_numpy_prompts(captioner):
    pixels = torch.from_numpy(INPUTS["pixel_values"][:1])
    a = captioner.generate(pixels, input_ids=torch.tensor([PROMPTS[0]], dtype=torch.int32), max_new_tokens=5)
    b = captioner.generate(pixels, input_ids=torch.tensor([PROMPTS[0]]), max_new_tokens=5)
    assert torch.equal(a, b)


def test_lengths(captioner):
    pixels = torch.from_numpy(INPUTS["pixel_values"])
    assert captioner.generate(pixels, min_new_tokens=20).shape == (2, 21)  # the default: 20 new tokens
    assert captioner.generate(pixels, max_length=7, min_length=7).shape == (2, 7)
    prompt = torch.tensor([[BOS, 5, 6, SEP]] * 2)
    assert captioner.generate(pixels, input_ids=prompt, max_new_tokens=4, min_new_tokens=4).shape == (2, 7)


def test_sampling_is_seeded_and_expands(captioner):
    pixels = torch.from_numpy(INPUTS["pixel_values"])
    kwargs = {"do_sample": True, "top_k": 10, "top_p": 0.9, "temperature": 1.3, "max_new_tokens": 8}
    a = captioner.generate(pixels, seed=7, num_return_sequences=3, **kwargs)
    b = captioner.generate(pixels, seed=7, num_return_sequences=3, **kwargs)
    c = captioner.generate(pixels, seed=8, num_return_sequences=3, **kwargs)
    assert a.shape[0] == 6 and torch.equal(a, b) and not torch.equal(a, c)
    beam_sample = captioner.generate(pixels, seed=3, num_beams=3, **kwargs)
    assert beam_sample.shape[0] == 2


def test_return_dict_in_generate(captioner):
    pixels = torch.from_numpy(INPUTS["pixel_values"])
    out = captioner.generate(
        pixels, num_beams=3, num_return_sequences=2, max_new_tokens=5, return_dict_in_generate=True, output_scores=True
    )
    assert out.sequences.shape[0] == 4 and out.sequences_scores.shape == (4,) and len(out.scores) >= 1


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"num_beams": 0}, ValueError, "num_beams must be an integer >= 1"),
        ({"num_beams": 2, "num_return_sequences": 3}, ValueError, "has to be smaller or equal to `num_beams`"),
        ({"do_sample": True, "temperature": 0.0}, ValueError, "temperature must be > 0"),
        ({"top_p": 1.5}, ValueError, "top_p must be in"),
        ({"early_stopping": "sometimes"}, ValueError, "`early_stopping` must be a boolean or 'never'"),
        ({"beams": 3}, TypeError, "unexpected arguments \\['beams'\\]"),
    ],
)
def test_bad_generation_arguments(captioner, kwargs, error, message):
    with pytest.raises(error, match=message):
        captioner.generate(torch.from_numpy(INPUTS["pixel_values"]), **kwargs)


def test_prompt_count_must_match_images(captioner):
    pixels = torch.from_numpy(INPUTS["pixel_values"])
    with pytest.raises(ValueError, match="3 rows for 2 images"):
        captioner.generate(pixels, input_ids=torch.tensor([PROMPTS[1]] * 3))
    one_for_all = captioner.generate(pixels, input_ids=torch.tensor([PROMPTS[1]]), max_new_tokens=3)
    assert one_for_all.shape[0] == 2


@pytest.mark.parametrize("group", [1, 3])
def test_dispatch_free_step_equals_module_forward(answerer, group):
    """`decoder_step` (used by generate) gives the module path's logits: padded rows, masked question, beams."""
    from blip_core.generation.options import GenerationOptions
    from blip_torch.decoding import start

    decoder = answerer.text_decoder
    states = torch.randn(2, 6, decoder.config.encoder_hidden_size, generator=torch.Generator().manual_seed(0))
    states_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    rows = [[BOS, 11, 23], [BOS]]
    config = GenerationOptions.from_kwargs(max_new_tokens=6)
    with torch.no_grad():
        state, prompt, _ = start(decoder, rows, states, states_mask, config)
        state.expand(group)
        prompt = prompt.repeat_interleave(group, 0)
        tokens = torch.tensor([5, 17, 30, 9, 41, 2])[: prompt.shape[0]]
        fast = state.step(tokens, 1)
        full = torch.cat([prompt, tokens[:, None]], 1)
        mask = (full != PAD).long()
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        slow = decoder(
            input_ids=full,
            attention_mask=mask,
            position_ids=positions,
            encoder_hidden_states=states.repeat_interleave(group, 0),
            encoder_attention_mask=states_mask.repeat_interleave(group, 0),
            return_dict=True,
        ).logits[:, -1]
    np.testing.assert_allclose(fast.numpy(), slow.numpy(), atol=1e-5, rtol=1e-5)
    assert state.cache.length == prompt.shape[1] + 1
