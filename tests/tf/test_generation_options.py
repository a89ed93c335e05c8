"""blip_tf generation options against `transformers` (4.57.6; 4.56.2 for group beam search), directly.

Golden data: tests/tools/make_generation_golden.py. Ids must be equal; scores, logits and
transition scores within the parity bound.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.compare import assert_outputs_close
from tests.helpers.generation_cases import ALL_CASES, GenCase, tf_params
from tests.helpers.generation_runs import compared, outputs
from tests.helpers.golden import load_npz

GOLDEN = {**load_npz("generation.npz"), **load_npz("generation_group.npz")}
# PyTorch-only options (the TF loop is compiled XLA: no clock, no callbacks); refused in TF, tested there.
TF_CASES = [case for case in ALL_CASES if "max_time" not in case.kwargs]


def golden_for(case: GenCase) -> dict[str, np.ndarray]:
    prefix = f"{case.name}::"
    found = {key[len(prefix) :]: value for key, value in GOLDEN.items() if key.startswith(prefix)}
    assert found, f"no golden outputs for {case.name}: run tests/tools/make_generation_golden.py"
    return compared(case, found)


@pytest.mark.parametrize("case", tf_params(TF_CASES))
def test_generate_matches_transformers(case):
    expected = golden_for(case)
    ours = compared(case, outputs("tf", case))
    assert set(ours) >= set(expected), f"missing outputs {set(expected) - set(ours)}"
    if "sequences" in expected:
        assert ours["sequences"].shape == expected["sequences"].shape, (ours["sequences"], expected["sequences"])
        assert np.array_equal(ours["sequences"], expected["sequences"]), (ours["sequences"], expected["sequences"])
    assert_outputs_close({k: ours[k] for k in expected}, expected)
