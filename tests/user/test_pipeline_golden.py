"""Every recorded `transformers` 4.57.6 pipeline call form gives `transformers`' result, in both frameworks.

The golden file (tests/tools/make_pipeline_golden.py) holds what `transformers.pipeline` returned
for each case of tests/helpers/pipeline_cases.py; the same calls run here through
`blip_core.pipeline` with framework="pt" and "tf". Where `transformers` is wrong (REFERENCE
section 0, and the call forms it rejects by accident), the expected result is the one it gives
for the same inputs one at a time, also recorded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import blip_core
from tests.helpers.golden import load_json
from tests.helpers.pipeline_cases import CASES, CASES_BY_NAME, ERROR_CASES, Env, make_env, plain
from tests.helpers.pipeline_models import model_folders, weights_digest, write_zero_shot_model

GOLDEN = load_json("pipelines.json")
FRAMEWORKS = ["pt", "tf"]
# How a call is read is framework-neutral (blip_core.tasks.pipeline_inputs); each TF pipeline costs a model load and
# an XLA compile. The default run replays every case in PyTorch and these in TF too (`--run-slow`: all in TF).
TF_QUICK_CASES = {
    "cap_list_batch3",
    "cap_generator_batch2",
    "cap_generate_kwargs",
    "cap_beams_two_sequences",
    "vqa_seed_form",
    "vqa_padded_batches",
    "vqa_key_dataset_question",
    "vqa_empty_list",
    "itt_lists",
    "zs_list_batch2",
}


def _case_params(names: list[str]) -> list:
    return [
        pytest.param(
            name,
            framework,
            id=f"{name}-{framework}",
            marks=() if framework == "pt" or name in TF_QUICK_CASES else pytest.mark.slow,
        )
        for name in names
        for framework in FRAMEWORKS
    ]


def _flat(name: str) -> list:
    return GOLDEN["cases"][name]["result"]


# Where transformers is wrong, what is expected instead (built from other recorded results).
DELIBERATE = {
    # transformers 4.57.6 pops images= but still requires its positional `inputs`: a TypeError
    "cap_images_kw": lambda: _flat("cap_list")[1],
    # a batch of prompts of different lengths: each row as alone (transformers keeps the pad inside)
    "itt_lists": lambda: [_flat("itt_single")[0], _flat("itt_there_are")[0]],
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    found = model_folders(write_zero_shot_model(tmp_path_factory.mktemp("zero_shot") / "model"))
    digests = {key: weights_digest(folder) for key, folder in found.items()}
    assert digests == GOLDEN["weights"], (
        "the models changed since the golden file: run tests/tools/make_pipeline_golden.py"
    )
    return found


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    return make_env(tmp_path_factory.mktemp("pipeline_images"), blip_core.KeyDataset)


@pytest.fixture(scope="module")
def pipes(folders):
    cache: dict[tuple, blip_core.Pipeline] = {}

    def get(task: str, model: str, init: dict[str, Any], framework: str) -> blip_core.Pipeline:
        key = (task, model, repr(sorted(init.items())), framework)
        if key not in cache:
            cache[key] = blip_core.pipeline(task, model=str(folders[model]), framework=framework, **init)
        return cache[key]

    return get


def assert_same(ours: Any, expected: Any, where: str = "result") -> None:
    """Equal structure, strings and ids; floats within 1e-4."""
    if isinstance(expected, float):
        assert isinstance(ours, float) and abs(ours - expected) <= 1e-4, f"{where}: {ours} != {expected}"
    elif isinstance(expected, dict):
        assert isinstance(ours, dict) and sorted(ours) == sorted(expected), f"{where}: keys {ours} != {expected}"
        for key in expected:
            assert_same(ours[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, list):
        assert isinstance(ours, list) and len(ours) == len(expected), f"{where}: {ours} != {expected}"
        for i, (a, b) in enumerate(zip(ours, expected, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert ours == expected, f"{where}: {ours!r} != {expected!r}"


def test_every_case_was_recorded():
    assert sorted(GOLDEN["cases"]) == sorted(case.name for case in CASES)
    assert GOLDEN["versions"]["transformers"] == "4.57.6"


@pytest.mark.parametrize(("name", "framework"), _case_params([case.name for case in CASES]))
def test_call_form_gives_the_transformers_result(name, framework, pipes, env):
    case = CASES_BY_NAME[name]
    recorded = GOLDEN["cases"][name]
    expected = DELIBERATE[name]() if name in DELIBERATE else recorded["result"]
    assert name in DELIBERATE or "error" not in recorded
    args, kwargs = case.call(env)
    assert_same(plain(pipes(case.task, case.model, case.init, framework)(*args, **kwargs)), expected, name)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("name", [case.name for case in ERROR_CASES])
def test_rejected_calls_raise_what_transformers_raises(name, framework, pipes, env):
    case = next(case for case in ERROR_CASES if case.name == name)
    recorded = GOLDEN["errors"][name]
    args, kwargs = case.call(env)
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the type is compared with transformers' below
        pipes(case.task, case.model, case.init, framework)(*args, **kwargs)
    assert type(caught.value).__name__ == recorded["error"], caught.value
    if name == "cap_max_new_tokens_twice":
        assert str(caught.value) == recorded["message"]


def _itm_expected(image_index: int, text_indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(GOLDEN["retrieval"]["itm_logits"][image_index], np.float64)[text_indices]
    cosine = np.asarray(GOLDEN["retrieval"]["itc_cosine"][image_index])[text_indices]
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True))[:, 1], cosine


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_image_text_matching_is_transformers_itm_and_itc(framework, pipes, env):
    texts = GOLDEN["retrieval"]["texts"][:3]
    pipe = pipes("image-text-matching", "itm", {"dtype": "float32"}, framework)
    for image_index, image in ((0, env.images[0]), (1, env.images[3])):
        match, cosine = _itm_expected(image_index, [0, 1, 2])
        out = pipe(image, text=texts)
        assert [row["text"] for row in out] == texts
        np.testing.assert_allclose([row["itm_score"] for row in out], match, atol=1e-4)
        np.testing.assert_allclose([row["itc_score"] for row in out], cosine, atol=1e-4)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_zero_shot_on_a_retrieval_checkpoint_normalises_the_itm_odds(framework, pipes, env):
    labels = ["square", "circle", "triangle"]
    pipe = pipes("zero-shot-image-classification", "itm", {"dtype": "float32"}, framework)
    for image_index, image in ((0, env.images[0]), (1, env.images[3])):
        match, _ = _itm_expected(image_index, [3, 4, 5])
        odds = match / (1 - match)
        expected = odds / odds.sum()
        out = pipe(image, candidate_labels=labels)
        order = np.argsort(-expected, kind="stable")
        assert [row["label"] for row in out] == [labels[i] for i in order]
        np.testing.assert_allclose([row["score"] for row in out], expected[order], atol=1e-4)
        assert pipe(image, candidate_labels=labels, top_k=1) == out[:1]
