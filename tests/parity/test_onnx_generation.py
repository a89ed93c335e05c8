"""ONNX Runtime generation (`blip_onnx`, graphs of `blip-convert to-onnx`) against `blip_torch.generate`.

Every generation case blip_torch runs (tests/helpers/generation_cases.py: greedy, beam, group beam, every
logits processor, prompts, padded batches, end-token lists, settings held by the model, seeded sampling) is
exported once per checkpoint and decoded by ONNX Runtime with NumPy: ids and `beam_indices` must equal
blip_torch's, scores, logits, `sequences_scores` and transition scores agree within 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.generation_cases import ALL_CASES, CAPTION, COMBINED_CASES, VQA
from tests.helpers.generation_runs import INPUTS, call, flatten_generation, load, outputs
from tests.parity.test_host_generation import PADDED, assert_same

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.xdist_group("onnx-generation")  # one worker exports each checkpoint once

# `decoder_config_beam3` edits `model.text_decoder.generation_config`: an export has no text_decoder module (its
# `generation_config` is the model's, which the other setup cases edit).
CASES = [
    case
    for case in ALL_CASES + COMBINED_CASES
    if "max_time" not in case.kwargs and case.setup != "decoder_config_beam3"
]


def settled(found: dict[str, np.ndarray], case, batch_budgets: list[int] | None) -> dict[str, np.ndarray]:
    """Per-step scores of an image's beams after its budget ran out compare as nothing (their order among
    tied scores is PyTorch's top-k's, implementation-defined; ids and sequence scores never depend on it)."""
    if not batch_budgets or not case.kwargs.get("num_beams", 1) > 1:
        return found
    beams = case.kwargs["num_beams"]
    out = dict(found)
    for key in ("scores", "logits"):
        if key in out:
            values = out[key].copy()
            for image, budget in enumerate(batch_budgets):
                values[budget:, image * beams : (image + 1) * beams] = 0.0
            out[key] = values
    return out


def _budgets(model, case, found) -> list[int] | None:
    """Each image's new-token budget when they differ (padded prompts under `max_length`), else None."""
    if "input_ids" not in case.inputs or case.class_name != "BlipForConditionalGeneration":
        return None
    from tests.helpers.generation_runs import INPUTS

    prompts = INPUTS[case.inputs["input_ids"]]
    lengths = [int((row != 0).sum()) - (1 if row[-1] == 102 else 0) for row in prompts]
    if len(set(lengths)) == 1 or "max_length" not in case.kwargs:
        return None
    return [case.kwargs["max_length"] - length for length in lengths]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_onnx_runtime_matches_blip_torch(case):
    expected = outputs("pt", case)
    model, out = call("onnx", case)
    found = flatten_generation(model, out)
    if case.first_step_only:  # sampled ids come from two different generators; the first scores do not
        found, expected = ({"scores0": values["scores"][:1]} for values in (found, expected))
    budgets = _budgets(model, case, found)
    assert_same(settled(found, case, budgets), settled(expected, case, budgets))


@pytest.mark.parametrize("kwargs", list(PADDED.values()), ids=list(PADDED))
def test_padded_prompts_and_questions(kwargs):
    """Prompts of different lengths (left-padded, per-row budgets from `max_length`) and padded questions:
    ids, beam indices and sequence scores as blip_torch's (per-step scores of finished images aside)."""
    ids, mask = INPUTS["input_ids"], INPUTS["attention_mask"]  # row 1 has two padded positions
    prompt_mask = mask[:, :4] * np.array([[1, 1, 1, 1], [1, 0, 0, 0]])  # 3 words and none
    extra = {"return_dict_in_generate": True, **kwargs}
    for class_name, variant, args in (
        (CAPTION, "varied", (INPUTS["pixel_values"], ids[:, :4], prompt_mask)),
        (VQA, "eos", (ids, INPUTS["pixel_values"], mask)),
    ):
        expected = load("pt", class_name, variant).generate(*(torch.from_numpy(a) for a in args), **extra)
        found = load("onnx", class_name, variant).generate(*args, **extra)
        for key in ("sequences", "beam_indices"):
            if expected.get(key) is not None:
                assert np.array_equal(found[key], expected[key].numpy()), key
        if expected.get("sequences_scores") is not None:
            np.testing.assert_allclose(found["sequences_scores"], expected["sequences_scores"].numpy(), atol=1e-4)
