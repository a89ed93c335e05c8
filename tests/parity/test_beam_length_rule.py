"""`beam_length_rule="whole_sequence"`: the original BLIP's beam scoring (its `transformers` 4.15), in both trees.

4.15 divides a hypothesis' summed log-probability by the length of the whole row, prompt included (a row that
ends is counted without its end token, a row cut at `max_length` with its last token), and stops a row when its
best candidate, at the current length, cannot beat its worst finished hypothesis. 4.57 (the default, kept)
counts only the new tokens. Two checks: golden ids and scores from 4.15's own `generate`, and a reference
written from that algorithm (list-based hypotheses, one image at a time, the model's plain forward for each
step's log-probabilities), not from the code under test.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from blip_core.config.generation_config import GenerationConfig
from tests.helpers.generation_cases import CAPTION
from tests.helpers.generation_runs import INPUTS, load
from tests.helpers.golden import load_json, load_npz
from tests.helpers.tiny import weights_hash

SEP = 3  # the tiny models' [SEP], BLIP's end token
# (prompt with BOS, lengths): the paper's min_length 5 and max_length 20 count the whole row, as in 4.15.
CASES = {
    "paper_lengths": ([97, 84, 84, 91, 65, 91], {"max_length": 20, "min_length": 5}),
    "short_prompt": ([97, 20, 30, 40, 50], {"max_length": 16, "min_length": 5}),
    "no_min_length": ([97, 91, 84, 65], {"max_length": 24}),
}


def _as_filled(sequences: np.ndarray, width: int) -> np.ndarray:
    """4.15 pads a finished row with `pad_token_id` (0); this library, as 4.57, with `pad_token_id or eos` ([SEP])."""
    filled = sequences.copy()
    for row in filled:
        ends = np.flatnonzero(row[width:] == SEP)
        if len(ends):
            row[width + ends[0] + 1 :] = SEP
    return filled


GOLDEN_CASES = ["paper_lengths", "short_prompt", "no_min_length", "no_prompt", "early_stopping", "length_penalty"]


# TF runs two of the cases (each compiles a loop); test_twins_agree compares it with PyTorch on other settings.
@pytest.mark.parametrize(
    "framework,name", [("pt", name) for name in GOLDEN_CASES] + [("tf", "paper_lengths"), ("tf", "no_prompt")]
)
def test_whole_sequence_equals_transformers_4_15(framework, name):
    """Golden data from 4.15's own `generate` (tests/tools/make_beam_length_rule_golden.py)."""
    options = dict(load_json("beam_length_rule.json")["cases"][name])
    golden = load_npz("beam_length_rule.npz")
    prompt = options.pop("prompt")
    out = _generate(framework, prompt, beam_length_rule="whole_sequence", **options)
    expected = _as_filled(golden[f"{name}.sequences"], len(prompt))
    assert np.array_equal(np.asarray(out.sequences), expected), (np.asarray(out.sequences).tolist(), expected.tolist())
    np.testing.assert_allclose(np.asarray(out.sequences_scores), golden[f"{name}.sequences_scores"], atol=1e-5)


def test_golden_data_used_these_weights():
    weights = {name: value.numpy() for name, value in load("pt", CAPTION, "eos").state_dict().items()}
    assert load_json("beam_length_rule.json")["weights_sha256"] == weights_hash(weights)


def reference_beam_search(model, pixels, prompt, num_beams, max_length, min_length=0, count=1, lp=1.0):
    """`transformers` 4.15's beam search for one image: [(score, ids)] best first, `count` of them."""
    vocab = model.config.text_config.vocab_size
    hypotheses: list[tuple[float, list[int]]] = []
    worst = 1e9

    def add(row: list[int], total: float) -> None:
        nonlocal worst
        score = total / len(row) ** lp
        if len(hypotheses) < num_beams or score > worst:
            hypotheses.append((score, row))
            if len(hypotheses) > num_beams:
                hypotheses.sort(key=lambda hypothesis: hypothesis[0])
                hypotheses.pop(0)
                worst = hypotheses[0][0]
            else:
                worst = min(score, worst)

    rows, totals, done = [list(prompt)] * num_beams, np.array([0.0] + [-1e9] * (num_beams - 1)), False
    while True:
        length = len(rows[0])
        with torch.no_grad():
            logits = model(pixel_values=pixels.expand(len(rows), -1, -1, -1), input_ids=torch.tensor(rows)).logits
        log_probs = torch.log_softmax(logits[:, -1].double(), -1).numpy()
        if length < min_length:
            log_probs[:, SEP] = -np.inf
        flat = (log_probs + totals[:, None]).ravel()
        order = np.argsort(-flat, kind="stable")[: 2 * num_beams]
        going = []
        for rank, index in enumerate(order):
            beam, token = divmod(int(index), vocab)
            if token == SEP:
                if rank < num_beams:
                    add(rows[beam], float(flat[index]))
            else:
                going.append((rows[beam] + [token], float(flat[index])))
            if len(going) == num_beams:
                break
        done = len(hypotheses) >= num_beams and worst >= flat[order[0]] / length**lp
        rows, totals = [row for row, _ in going], np.array([total for _, total in going])
        if done or len(rows[0]) >= max_length:
            break
    if not done:
        for row, total in zip(rows, totals, strict=True):
            add(row, float(total))
    best = sorted(hypotheses, key=lambda hypothesis: hypothesis[0], reverse=True)[:count]
    return [(score, row + [SEP] if len(row) < max_length else row) for score, row in best]


def _generate(framework: str, prompt: list[int], **kwargs):
    model = load(framework, CAPTION, "eos")
    pixels, ids = INPUTS["pixel_values"], np.array([prompt] * INPUTS["pixel_values"].shape[0], np.int64)
    if framework == "pt":
        pixels, ids = torch.from_numpy(pixels), torch.from_numpy(ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.generate(pixels, input_ids=ids, num_beams=3, return_dict_in_generate=True, **kwargs)


@pytest.mark.parametrize("name", list(CASES))
def test_whole_sequence_matches_the_reference(name):
    prompt, lengths = CASES[name]
    out = _generate("pt", prompt, beam_length_rule="whole_sequence", num_return_sequences=2, **lengths)
    model, pixels = load("pt", CAPTION, "eos"), torch.from_numpy(INPUTS["pixel_values"])
    expected = [
        found
        for image in range(pixels.shape[0])
        for found in reference_beam_search(
            model, pixels[image : image + 1], prompt, 3, lengths["max_length"], lengths.get("min_length", 0), count=2
        )
    ]
    sequences = out.sequences.numpy()
    # past its end a row holds `pad_token_id or eos_token_id` (transformers' fill): pad is 0 here, so [SEP]
    rows = np.array([row + [SEP] * (sequences.shape[1] - len(row)) for _, row in expected], np.int64)
    assert np.array_equal(sequences, rows), (sequences.tolist(), rows.tolist())
    np.testing.assert_allclose(out.sequences_scores.numpy(), [score for score, _ in expected], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_the_two_rules_pick_different_captions(name):
    """With a prompt, 4.57's rule keeps the long repetitive caption of the second image, 4.15's the short one."""
    prompt, lengths = CASES[name]
    new_tokens = _generate("pt", prompt, **lengths).sequences.numpy()
    whole = _generate("pt", prompt, beam_length_rule="whole_sequence", **lengths).sequences.numpy()
    assert not np.array_equal(new_tokens[1][new_tokens[1] != SEP], whole[1][whole[1] != SEP])
    assert SEP in whole[1] and SEP not in new_tokens[1]  # the original's rule stops early here


def test_without_a_prompt_only_cut_rows_differ():
    """A row of BOS alone (width 1): a row that ends has the same length under both rules (BOS + g tokens,
    or g tokens + the end token); a row cut at max_length counts one more under 4.15 (its BOS)."""
    new_tokens = _generate("pt", [97], max_length=12)
    whole = _generate("pt", [97], max_length=12, beam_length_rule="whole_sequence")
    assert np.array_equal(new_tokens.sequences.numpy(), whole.sequences.numpy())
    for row, new_score, whole_score in zip(
        whole.sequences.numpy(), new_tokens.sequences_scores.numpy(), whole.sequences_scores.numpy(), strict=True
    ):
        count = len(row) - 1  # new tokens, end included
        expected = new_score if SEP in row else new_score * count / (count + 1)
        np.testing.assert_allclose(whole_score, expected, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_return_sequences": 2, **CASES["paper_lengths"][1]},
        {"num_beam_groups": 3, "diversity_penalty": 0.7, **CASES["short_prompt"][1]},
        {"early_stopping": True, **CASES["short_prompt"][1]},
    ],
    ids=["beam", "group_beam", "early_stopping"],
)
def test_twins_agree(kwargs):
    prompt = CASES["paper_lengths"][0]
    out_pt = _generate("pt", prompt, beam_length_rule="whole_sequence", **kwargs)
    out_tf = _generate("tf", prompt, beam_length_rule="whole_sequence", **kwargs)
    assert np.array_equal(out_pt.sequences.numpy(), out_tf.sequences.numpy())
    np.testing.assert_allclose(out_tf.sequences_scores.numpy(), out_pt.sequences_scores.numpy(), atol=1e-4)
    assert np.array_equal(out_pt.beam_indices.numpy(), out_tf.beam_indices.numpy())


def test_the_rule_is_a_saved_generation_config_field(tmp_path):
    config = GenerationConfig(num_beams=3, beam_length_rule="whole_sequence")
    config.save_pretrained(tmp_path)
    assert '"beam_length_rule": "whole_sequence"' in (tmp_path / "generation_config.json").read_text()
    assert GenerationConfig.from_pretrained(tmp_path).beam_length_rule == "whole_sequence"
    assert "beam_length_rule" not in GenerationConfig().to_dict()  # the default writes transformers' own files


@pytest.mark.parametrize("value", ["original", 1])
def test_bad_rules_are_refused(value):
    with pytest.raises(ValueError, match="beam_length_rule"):
        GenerationConfig(num_beams=3, beam_length_rule=value)
    with pytest.raises(ValueError, match="beam_length_rule"):
        GenerationConfig(num_beams=3, beam_length_rule=None)  # as a call argument, None means the default
    with pytest.raises(ValueError, match="beam_length_rule"):
        _generate("pt", [97, 91], max_length=8, beam_length_rule=value)
