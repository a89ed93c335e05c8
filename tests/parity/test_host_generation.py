"""The NumPy generation loop (`blip_core.generation.host`) against `blip_torch.generate`.

Every generation case blip_torch runs (tests/helpers/generation_cases.py) is decoded twice: by
blip_torch, and by the host loop driving the same decoder through `TorchRunner` (NumPy in and out).
Ids and `beam_indices` must be identical; scores, logits, `sequences_scores` and transition scores
within 1e-4 (relative where larger than 1). Sampling with `seed` draws from NumPy's generator, so only
the first step's scores compare; with `sampling_seeds` the ids are the same.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from blip_core.generation.host import generate, transition_scores
from blip_core.generation.options import GenerationOptions, SpecialTokens
from tests.helpers.compare import assert_outputs_close
from tests.helpers.generation_cases import ALL_CASES, CAPTION, COMBINED_CASES, VQA
from tests.helpers.generation_runs import INPUTS, call, finite, flatten_generation, load
from tests.helpers.torch_runner import host_generate, record_decoding

CASES = [case for case in ALL_CASES + COMBINED_CASES if "max_time" not in case.kwargs]


def flatten_host(out, vocab_size: int) -> dict[str, np.ndarray]:
    """The arrays `flatten_generation` gives for blip_torch, from a host output (NumPy)."""
    if not hasattr(out, "sequences"):
        return {"sequences": np.asarray(out)}
    found = {"sequences": out.sequences}
    for key in ("scores", "logits"):
        if out.get(key) is not None:
            found[key] = np.stack(out[key])
    for key in ("sequences_scores", "beam_indices"):
        if out.get(key) is not None:
            found[key] = out[key]
    if out.get("scores") is not None:
        indices = out.get("beam_indices")
        for normalize in (False, True):
            scores = transition_scores(out.sequences, out.scores, indices, normalize, vocab_size)
            found["transition_normalized" if normalize else "transition"] = scores
    return found


def assert_same(host: dict[str, np.ndarray], torch_found: dict[str, np.ndarray]) -> None:
    """Integer outputs identical (same dtype), float outputs within 1e-4 (infinities compared as values)."""
    assert set(host) == set(torch_found), (sorted(host), sorted(torch_found))
    for key, expected in torch_found.items():
        assert host[key].dtype == expected.dtype, (key, host[key].dtype, expected.dtype)
        if expected.dtype.kind in "iub":
            assert np.array_equal(host[key], expected), (key, host[key], expected)
    assert_outputs_close(
        {k: finite(v) for k, v in host.items() if v.dtype.kind == "f"},
        {k: finite(v) for k, v in torch_found.items() if v.dtype.kind == "f"},
    )


def settled(found: dict[str, np.ndarray], recorded: dict) -> dict[str, np.ndarray]:
    """`found` with the per-step scores/logits of an image's beams zeroed from the step its budget ran out on.

    When one image of a batch reaches its budget before the others, all its candidates end at once and
    its beams go on as copies picked among exactly tied scores (`NEVER`); which copy goes where is the
    order PyTorch's top-k gives ties (implementation-defined), so those rows' later scores are not
    comparable. Ids, `sequences_scores` and `beam_indices` never depend on them.
    """
    options = recorded["options"]
    if not options.is_beam or not any(key in found for key in ("scores", "logits")):
        return found
    positions = recorded["decoder"].config.max_position_embeddings
    budgets = [options.length_limits(len(row), positions)[0] for row in recorded["rows"]]
    out = dict(found)
    for key in ("scores", "logits"):
        if key in out:
            values = out[key].copy()  # (steps, images * beams, V)
            for image, budget in enumerate(budgets):
                values[budget:, image * options.num_beams : (image + 1) * options.num_beams] = 0.0
            out[key] = values
    return out


def run_both(case_or_call) -> tuple[dict, dict, object]:
    """(host flattened, blip_torch flattened, runner) for a generation case."""
    with record_decoding() as calls:
        model, out = call("pt", case_or_call)
    recorded = calls[-1]
    host_out, runner = host_generate(recorded)
    host = settled(flatten_host(host_out, runner.vocab_size), recorded)
    return host, settled(flatten_generation(model, out), recorded), runner


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_host_loop_matches_blip_torch(case):
    host, found, _ = run_both(case)
    if case.first_step_only:  # sampled ids come from two different generators; the first scores do not
        host, found = ({"scores0": values["scores"][:1]} for values in (host, found))
    assert_same(host, found)


def _generate_both(class_name: str, variant: str, *args, **kwargs) -> tuple[object, object, object, dict]:
    """(host output, blip_torch output, runner, recorded call) for one `generate` call on the cached model."""
    model = load("pt", class_name, variant)
    with record_decoding() as calls, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.generate(*args, **kwargs)
    host_out, runner = host_generate(calls[-1])
    return host_out, out, runner, calls[-1]


PADDED = {
    "greedy": {"max_new_tokens": 7, "repetition_penalty": 1.3},
    "beam": {"num_beams": 3, "num_return_sequences": 2, "max_length": 11, "output_scores": True},
    "beam_whole_sequence": {"num_beams": 3, "beam_length_rule": "whole_sequence", "max_length": 12},
    "beam_never": {"num_beams": 2, "early_stopping": "never", "length_penalty": 1.5, "max_new_tokens": 6},
    "beam_early": {"num_beams": 4, "early_stopping": True, "no_repeat_ngram_size": 2, "max_new_tokens": 9},
    "group": {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 0.9, "max_new_tokens": 6},
}


@pytest.mark.parametrize("kwargs", list(PADDED.values()), ids=list(PADDED))
def test_padded_prompts_and_questions(kwargs):
    """Prompts of different lengths (left-padded, per-row budgets from `max_length`) and padded questions."""
    pixels = torch.from_numpy(INPUTS["pixel_values"])
    ids, mask = INPUTS["input_ids"], INPUTS["attention_mask"]  # row 1 has two padded positions
    extra = {"return_dict_in_generate": True, **kwargs}
    prompt_mask = torch.from_numpy(mask[:, :4] * np.array([[1, 1, 1, 1], [1, 0, 0, 0]]))  # 3 words and none
    for class_name, variant, args in (
        (CAPTION, "varied", (pixels, torch.from_numpy(ids[:, :4]), prompt_mask)),
        (VQA, "eos", (torch.from_numpy(ids), pixels, torch.from_numpy(mask))),
    ):
        host, out, runner, recorded = _generate_both(class_name, variant, *args, **extra)
        assert recorded["mask"] is not None or class_name == CAPTION
        found = flatten_generation(load("pt", class_name, variant), out)
        assert_same(settled(flatten_host(host, runner.vocab_size), recorded), settled(found, recorded))
    if class_name == VQA:  # the padded question really reached the decoder as a mask
        assert recorded["mask"][1].sum() == 5


SEEDED = {
    "plain": {"max_new_tokens": 9},
    "returned3_warped": {"num_return_sequences": 3, "top_k": 8, "top_p": 0.9, "temperature": 1.4, "max_new_tokens": 8},
    "processors": {"no_repeat_ngram_size": 2, "repetition_penalty": 1.5, "typical_p": 0.8, "min_new_tokens": 4},
}


@pytest.mark.parametrize("kwargs", list(SEEDED.values()), ids=list(SEEDED))
def test_sampling_seeds_give_blip_torch_ids(kwargs):
    """Per-image seeded sampling draws the same uniforms on both sides: the ids are identical."""
    pixels = torch.from_numpy(INPUTS["pixel_values"])
    extra = {"do_sample": True, "sampling_seeds": [11, 2024], "output_scores": True, "return_dict_in_generate": True}
    host, out, runner, _ = _generate_both(CAPTION, "varied", pixels, **extra, **kwargs)
    assert host.sequences.shape[1] > 4, host.sequences  # really sampled several tokens
    assert_same(flatten_host(host, runner.vocab_size), flatten_generation(load("pt", CAPTION, "varied"), out))
    rows = host.sequences.shape[0] // 2
    assert not np.array_equal(host.sequences[0], host.sequences[rows]), host.sequences  # two images, two seeds


def test_plain_seed_is_reproducible_and_sampled():
    """`seed` seeds NumPy's generator: the same ids twice, and sampling really departs from greedy."""
    pixels = torch.from_numpy(INPUTS["pixel_values"])
    kwargs = {"do_sample": True, "seed": 5, "max_new_tokens": 10, "num_return_sequences": 4}
    first, _, _, recorded = _generate_both(CAPTION, "varied", pixels, **kwargs)
    again, _ = host_generate(recorded)
    assert np.array_equal(first, again)
    greedy, _ = host_generate(recorded, do_sample=False, num_return_sequences=1)
    assert first.shape[0] == 8 and not all(np.array_equal(row, greedy[0][: len(row)]) for row in first[:4])


def test_sampled_beam_search_runs_with_numpy_draws():
    """Sampled beam search (`do_sample` with beams): seeded NumPy draws, reproducible, hypotheses sorted."""
    pixels = torch.from_numpy(INPUTS["pixel_values"])
    kwargs = {"do_sample": True, "num_beams": 3, "num_return_sequences": 3, "seed": 1, "max_new_tokens": 6}
    first, _, _, recorded = _generate_both(CAPTION, "varied", pixels, return_dict_in_generate=True, **kwargs)
    again, _ = host_generate(recorded)
    assert np.array_equal(first.sequences, again.sequences)
    scores = first.sequences_scores.reshape(2, 3)
    assert (np.diff(scores, axis=1) <= 0).all() and np.isfinite(scores).all(), scores


class Recorder:
    def __init__(self) -> None:
        self.parts: list = []
        self.ended = 0

    def put(self, value) -> None:
        self.parts.append(value)

    def end(self) -> None:
        self.ended += 1


def test_streamer_gets_the_prompt_then_each_token_as_numpy():
    pixels = torch.from_numpy(INPUTS["pixel_values"])
    torch_streamer, host_streamer = Recorder(), Recorder()
    model = load("pt", CAPTION, "eos")
    with record_decoding() as calls:
        model.generate(pixels, max_new_tokens=6, streamer=torch_streamer)
    host_ids, _ = host_generate(calls[-1], streamer=host_streamer)
    assert host_streamer.ended == 1 and all(isinstance(part, np.ndarray) for part in host_streamer.parts)
    assert len(host_streamer.parts) == len(torch_streamer.parts) == host_ids.shape[1] == 7
    for ours, theirs in zip(host_streamer.parts, torch_streamer.parts, strict=True):
        assert np.array_equal(ours, theirs.numpy())
    assert np.array_equal(np.column_stack(host_streamer.parts), host_ids)


class NeverRunner:
    vocab_size = 10

    def start(self, *args):
        raise AssertionError("an empty batch must not run the model")

    expand = reorder = step = start


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"return_dict_in_generate": True, "output_scores": True}, {"num_beams": 2, "return_dict_in_generate": True}],
)
def test_empty_batch(kwargs):
    options = GenerationOptions.from_kwargs(**kwargs)
    out = generate(NeverRunner(), [], options, SpecialTokens((2,), 0, 1), 40, 0)
    sequences = out.sequences if kwargs else out
    assert sequences.shape == (0, 1) and sequences.dtype == np.int64
    if kwargs.get("num_beams"):
        assert out.sequences_scores.shape == (0,)
    if kwargs.get("output_scores"):
        assert out.scores == ()


def test_bad_calls_raise_value_errors():
    options = GenerationOptions.from_kwargs(do_sample=True, sampling_seeds=[1, 2])
    with pytest.raises(ValueError, match="sampling_seeds holds 2 seeds but the batch has 1 images"):
        generate(NeverRunner(), [[1]], options, SpecialTokens((2,), 0, 1), 40, 0)
    with pytest.raises(ValueError):  # no position left for a new token
        generate(NeverRunner(), [[1] * 40], GenerationOptions(), SpecialTokens((2,), 0, 1), 40, 0)


def test_finished_rows_stop_the_runner():
    """Greedy stops stepping once every row has ended: an "eos" model ends well before its budget."""
    pixels = torch.from_numpy(INPUTS["pixel_values"])
    ids, _, runner, _ = _generate_both(CAPTION, "eos", pixels, max_new_tokens=30, repetition_penalty=1.5)
    assert ids.shape[1] == 5 and runner.calls["step"] == 3, (ids, runner.calls)
    assert runner.calls["start"] == 1 and runner.calls["reorder"] == 0


def test_topk_orders_ties_by_index_on_both_paths():
    from blip_core.generation.host.beam_search import NEVER, topk

    rng = np.random.default_rng(0)
    values = rng.standard_normal((3, 400)).astype(np.float32)
    values[1, ::2] = NEVER  # many exact ties, below the cut
    values[2, 50:60] = 9.0  # ties straddling the cut: the full sort
    for count in (1, 6, 20):
        top, index = topk(values, count)
        expected = np.argsort(-values, axis=-1, kind="stable")[:, :count]
        assert np.array_equal(index, expected) and np.array_equal(top, np.take_along_axis(values, expected, -1))
    assert topk(values, 6)[1][2].tolist() == [50, 51, 52, 53, 54, 55]


def test_host_package_imports_no_framework():
    code = (
        "import sys, blip_core.generation.host, blip_core.generation.host.group_beam_search\n"
        "print(' '.join(m for m in ('torch', 'tensorflow', 'keras', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"blip_core.generation.host pulled in: {out.stdout.strip()}"
