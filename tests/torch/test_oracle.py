"""blip_torch against `transformers` 4.57.6 PyTorch BLIP: every class and method, and generated ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import blip_torch
from tests.helpers.checkpoints import write_generation_checkpoint
from tests.helpers.compare import assert_outputs_close
from tests.helpers.golden import load_json, load_npz
from tests.helpers.model_cases import FORWARD_CASES, GENERATION_CASES
from tests.helpers.tiny import generation_model, seeded_weights, weights_hash

GOLDEN = load_npz("models.npz")
META = load_json("models.json")
_MODELS: dict[str, torch.nn.Module] = {}


@pytest.fixture
def model_for(tiny_checkpoints, tmp_path_factory):
    def get(class_name: str, variant: str = "plain") -> torch.nn.Module:
        key = f"{class_name}:{variant}"
        if key not in _MODELS:
            folder = tiny_checkpoints[class_name]
            if variant != "plain":
                folder = write_generation_checkpoint(class_name, variant, tmp_path_factory.mktemp(variant))
            _MODELS[key] = getattr(blip_torch, class_name).from_pretrained(folder)
        return _MODELS[key]

    return get


def case_inputs(case):
    return {arg: torch.from_numpy(GOLDEN[f"input::{key}"].copy()) for arg, key in case.inputs.items()}


def golden_outputs(case_name: str) -> dict[str, np.ndarray]:
    prefix = f"{case_name}::"
    found = {key[len(prefix) :]: value for key, value in GOLDEN.items() if key.startswith(prefix)}
    assert found, f"no golden outputs stored for case {case_name}"
    return found


@pytest.mark.parametrize("key", sorted(META["weights_sha256"]))
def test_golden_weights_are_ours(key):
    class_name, _, variant = key.partition(":")
    weights = generation_model(class_name, variant)[1] if variant else seeded_weights(class_name)
    assert weights_hash(weights) == META["weights_sha256"][key]


@pytest.mark.parametrize("case", FORWARD_CASES, ids=[case.name for case in FORWARD_CASES])
def test_forward_matches_transformers(model_for, case):
    model = model_for(case.class_name)
    with torch.no_grad():
        out = getattr(model, case.method)(**case_inputs(case), **case.kwargs)
    assert_outputs_close(out if isinstance(out, dict) else {"": out}, golden_outputs(case.name))


@pytest.mark.parametrize("case", GENERATION_CASES, ids=[case.name for case in GENERATION_CASES])
def test_generate_matches_transformers(model_for, case):
    model = model_for(case.class_name, case.variant)
    ids = model.generate(**case_inputs(case), **case.kwargs).numpy()
    expected = GOLDEN[f"gen::{case.name}"]
    assert ids.shape == expected.shape and np.array_equal(ids, expected), f"ours\n{ids}\ntransformers\n{expected}"
