"""Generation cases shared by `tests/tools/make_generation_golden.py` (the oracle) and the tests of both trees.

A case names a class, the generation-weights variant, which stored inputs feed
which arguments, keyword arguments and what to compare. `setup` cases change the
model (its text config, its generation config) before calling `generate`, the
same way in `transformers` and here; their keyword arguments may hold a
`GenerationConfig`, built by `make_kwargs(GenerationConfigClass)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.helpers.model_cases import BOS, SEP, make_inputs

CAPTION, VQA = "BlipForConditionalGeneration", "BlipForQuestionAnswering"
PIX = {"pixel_values": "pixel_values"}
PROMPT = {**PIX, "input_ids": "prompt_words"}
QUESTION = {"input_ids": "input_ids_full", **PIX}
OUT = {"output_scores": True, "return_dict_in_generate": True}


def make_generation_inputs() -> dict[str, np.ndarray]:
    """The model-case inputs plus prompts made of the tokens the "varied" decoder favours."""
    inputs = make_inputs()
    inputs["prompt_words"] = np.array([[BOS, 91, 84, 65, SEP], [BOS, 84, 84, 91, SEP]], np.int64)
    return inputs


@dataclass(frozen=True)
class GenCase:
    name: str
    class_name: str
    variant: str
    inputs: dict[str, str]
    kwargs: dict[str, Any] = field(default_factory=dict)
    oracle: str = "4.57"  # "4.56": group beam search, recorded with the last transformers that has it built in
    first_step_only: bool = False  # sampling: only the first step's scores are deterministic
    via_decoder: bool = False  # transformers' BLIP refuses eos_token_id: record its text decoder's generate
    setup: str | None = None  # a function of SETUPS, applied to a fresh model first


def _case(name, class_name, variant, inputs, **kwargs) -> GenCase:
    return GenCase(name, class_name, variant, inputs, kwargs)


PROCESSOR_CASES = [
    _case("nrng2", CAPTION, "eos", PIX, no_repeat_ngram_size=2, max_new_tokens=12),
    _case("nrng3_beam", CAPTION, "varied", PIX, num_beams=3, no_repeat_ngram_size=3, max_new_tokens=12),
    _case("nrng2_prompt", CAPTION, "varied", PROMPT, no_repeat_ngram_size=2, max_new_tokens=10),
    _case("bad_words", CAPTION, "varied", PIX, bad_words_ids=[[91], [84, 65]], max_new_tokens=12),
    _case("bad_words_beam", CAPTION, "varied", PIX, num_beams=3, bad_words_ids=[[84], [91, 91]], max_new_tokens=10),
    _case("bad_words_eos_kept", CAPTION, "eos", PIX, bad_words_ids=[[3], [20, 20, 20]], max_new_tokens=10),
    _case("sequence_bias", CAPTION, "varied", PIX, sequence_bias={(65,): 2.0, (91, 84): -3.0}, max_new_tokens=12),
    _case("min_new_tokens", CAPTION, "eos", PIX, no_repeat_ngram_size=2, min_new_tokens=6, max_new_tokens=12),
    _case("min_new_tokens_beam", CAPTION, "eos", PIX, num_beams=2, min_new_tokens=5, no_repeat_ngram_size=2),
    _case("forced_eos", CAPTION, "varied", PIX, forced_eos_token_id=3, max_new_tokens=6),
    _case("forced_eos_beam", CAPTION, "varied", PIX, num_beams=3, forced_eos_token_id=[3, 40], max_new_tokens=5),
    _case("exp_decay", CAPTION, "eos", PIX, exponential_decay_length_penalty=(2, 1.6), no_repeat_ngram_size=2),
    _case("exp_decay_beam", CAPTION, "varied", PIX, num_beams=3, exponential_decay_length_penalty=(3, 2.5)),
    _case("suppress", CAPTION, "varied", PIX, suppress_tokens=[91, 84], max_new_tokens=8),
    _case("begin_suppress", CAPTION, "varied", PIX, begin_suppress_tokens=[91, 84], max_new_tokens=6),
    _case("forced_bos", CAPTION, "varied", PIX, forced_bos_token_id=40, begin_suppress_tokens=[91], max_new_tokens=5),
    _case("encoder_rep", CAPTION, "varied", PROMPT, encoder_repetition_penalty=1.8, max_new_tokens=8),
    _case("encoder_nrng", CAPTION, "varied", PROMPT, encoder_no_repeat_ngram_size=2, max_new_tokens=8),
    _case(
        "renormalize", CAPTION, "varied", PIX, renormalize_logits=True, repetition_penalty=1.3, max_new_tokens=5, **OUT
    ),
    _case(
        "remove_invalid",
        CAPTION,
        "varied",
        PIX,
        remove_invalid_values=True,
        bad_words_ids=[[91]],
        max_new_tokens=4,
        **OUT,
    ),
    _case("scores_greedy", CAPTION, "varied", PIX, output_logits=True, max_new_tokens=6, **OUT),
    _case("scores_prompt", CAPTION, "eos", PROMPT, max_new_tokens=5, **OUT),
    _case(
        "scores_beam",
        CAPTION,
        "eos",
        PIX,
        num_beams=3,
        num_return_sequences=2,
        length_penalty=0.7,
        output_logits=True,
        max_new_tokens=8,
        **OUT,
    ),
    _case("scores_beam_varied", CAPTION, "varied", PIX, num_beams=4, max_new_tokens=7, **OUT),
    _case("vqa_nrng", VQA, "varied", QUESTION, no_repeat_ngram_size=2, max_new_tokens=8),
    _case("vqa_scores_beam", VQA, "eos", QUESTION, num_beams=2, max_new_tokens=6, **OUT),
]

SAMPLING_CASES = [
    GenCase(
        name, CAPTION, "varied", PIX, {"do_sample": True, "max_new_tokens": 1, **OUT, **kwargs}, first_step_only=True
    )
    for name, kwargs in [
        ("sample_typical", {"typical_p": 0.5}),
        ("sample_min_p", {"min_p": 0.2, "temperature": 0.7}),
        ("sample_epsilon", {"epsilon_cutoff": 0.02}),
        ("sample_eta", {"eta_cutoff": 0.05}),
        ("sample_top_k_p", {"top_k": 5, "top_p": 0.8, "temperature": 1.3}),
        ("sample_beam_typical", {"num_beams": 2, "typical_p": 0.4, "min_p": 0.05}),
    ]
]

END_TOKEN_CASES = [
    GenCase("eos_list", CAPTION, "varied", PIX, {"eos_token_id": [3, 84], "max_new_tokens": 10}, via_decoder=True),
    GenCase(
        "eos_list_beam",
        CAPTION,
        "varied",
        PIX,
        {"eos_token_id": [3, 65], "num_beams": 3, "max_new_tokens": 10},
        via_decoder=True,
    ),
]

_GROUP = {"num_beams": 4, "num_beam_groups": 2}
GROUP_CASES = [
    GenCase(name, class_name, variant, inputs, kwargs, oracle="4.56")
    for name, class_name, variant, inputs, kwargs in [
        ("group4x2", CAPTION, "varied", PIX, {**_GROUP, "diversity_penalty": 1.0, "max_new_tokens": 10}),
        (
            "group6x3_return3",
            CAPTION,
            "eos",
            PIX,
            {"num_beams": 6, "num_beam_groups": 3, "diversity_penalty": 0.5, "num_return_sequences": 3},
        ),
        ("group_early", CAPTION, "eos", PIX, {**_GROUP, "diversity_penalty": 2.0, "early_stopping": True}),
        (
            "group4x4_never",
            CAPTION,
            "eos",
            PIX,
            {"num_beams": 4, "num_beam_groups": 4, "diversity_penalty": 1.5, "early_stopping": "never"},
        ),
        ("group_scores", CAPTION, "varied", PIX, {**_GROUP, "diversity_penalty": 1.0, "max_new_tokens": 6, **OUT}),
        (
            "group_processors",
            CAPTION,
            "varied",
            PIX,
            {**_GROUP, "diversity_penalty": 0.7, "no_repeat_ngram_size": 2, "repetition_penalty": 1.2},
        ),
        ("group_prompt", CAPTION, "varied", PROMPT, {**_GROUP, "diversity_penalty": 1.0, "length_penalty": 0.6}),
        ("group_vqa", VQA, "eos", QUESTION, {**_GROUP, "diversity_penalty": 1.0, "max_new_tokens": 8}),
    ]
]


# -- settings held by the model ---------------------------------------------------------------


def _text(model: Any, **values: Any) -> dict:
    for key, value in values.items():
        setattr(model.config.text_config, key, value)
    return {}


# name -> f(model, GenerationConfig class, call inputs) -> extra generate kwargs.
SETUPS: dict[str, Callable[[Any, Any, dict], dict]] = {
    "legacy_beam5_len40": lambda model, config, inputs: _text(model, num_beams=5, max_length=40),
    "legacy_beam3_len20": lambda model, config, inputs: _text(model, num_beams=3, max_length=20),
    "legacy_len12": lambda model, config, inputs: _text(model, max_length=12),
    "legacy_min_length": lambda model, config, inputs: _text(model, min_length=9, repetition_penalty=1.4),
    "legacy_after_first_call": lambda model, config, inputs: (model.generate(**inputs), _text(model, num_beams=3))[1],
    "passed_beam3_new6": lambda model, config, inputs: {"generation_config": config(num_beams=3, max_new_tokens=6)},
    "passed_then_kwarg": lambda model, config, inputs: {
        "generation_config": config(num_beams=3, max_new_tokens=6),
        "num_beams": 2,
    },
    "passed_len20": lambda model, config, inputs: {"generation_config": config(max_length=20)},
    "passed_len9": lambda model, config, inputs: {"generation_config": config(max_length=9)},
    "kwarg_len20": lambda model, config, inputs: {"max_length": 20},
    "legacy_and_passed": lambda model, config, inputs: {
        **_text(model, num_beams=3),
        "generation_config": config(max_new_tokens=6),
    },
    "decoder_config_beam3": lambda model, config, inputs: _set(model.text_decoder.generation_config, num_beams=3),
}


def _set(target: Any, **values: Any) -> dict:
    for key, value in values.items():
        setattr(target, key, value)
    return {}


SETUP_CASES = [GenCase(name, CAPTION, "varied", PIX, setup=name) for name in SETUPS]

# Text-config generation fields in a checkpoint's config.json (old "full dump" configs carry all of them).
FULL_DUMP_FIELDS = {
    "max_length": 20,
    "min_length": 0,
    "num_beams": 1,
    "do_sample": False,
    "early_stopping": False,
    "length_penalty": 1.0,
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "num_return_sequences": 1,
    "top_k": 50,
    "top_p": 1.0,
    "temperature": 1.0,
    "bad_words_ids": None,
    "diversity_penalty": 0.0,
    "num_beam_groups": 1,
}
CHECKPOINT_CASES = {
    "full_dump": {},
    "saved_beam3_len20": {"num_beams": 3, "max_length": 20},
    "saved_beam2_len14": {"num_beams": 2, "max_length": 14},
}
# A top-level generation_config.json: `transformers`' BLIP ignores it; this project uses it.
TOP_LEVEL_GENERATION_CONFIG = {"num_beams": 2, "max_new_tokens": 5, "no_repeat_ngram_size": 2}

ALL_CASES = PROCESSOR_CASES + SAMPLING_CASES + END_TOKEN_CASES + GROUP_CASES + SETUP_CASES

# Each TF case compiles its own XLA decoding loop (~2 s here, more on slower CI machines). The default run
# takes one case of each processor family, search mode and precedence rule through TF; PyTorch runs every
# case against the golden data, and `--run-slow` runs every case through TF too.
TF_QUICK_CASES = frozenset(
    {
        "nrng3_beam",
        "bad_words",
        "min_new_tokens_beam",
        "forced_bos",
        "scores_beam",
        "vqa_scores_beam",
        "sample_beam_typical",
        "eos_list_beam",
        "group_processors",
        "group_scores",
        "legacy_beam5_len40",
        "decoder_config_beam3",
    }
)


# Twin-only cases (no golden data: PyTorch meets transformers on each option alone, above) that put every
# processor and warper outside the quick set through one TF loop each, so the default run still compiles
# all of blip_tf's logits code.
COMBINED_CASES = [
    _case(
        "combined_greedy",
        CAPTION,
        "varied",
        PROMPT,
        sequence_bias={(65,): 1.5, (91, 84): -2.0},
        forced_eos_token_id=3,
        exponential_decay_length_penalty=(2, 1.4),
        encoder_repetition_penalty=1.5,
        encoder_no_repeat_ngram_size=2,
        suppress_tokens=[40],
        renormalize_logits=True,
        remove_invalid_values=True,
        repetition_penalty=1.2,
        max_new_tokens=7,
        output_logits=True,
        **OUT,
    ),
    _case(
        "combined_beam",
        CAPTION,
        "eos",
        PIX,
        num_beams=3,
        num_return_sequences=2,
        no_repeat_ngram_size=2,
        bad_words_ids=[[91], [84, 65]],
        sequence_bias={(40,): 1.0},
        forced_eos_token_id=[3, 40],
        exponential_decay_length_penalty=(3, 2.0),
        begin_suppress_tokens=[84],
        min_new_tokens=3,
        length_penalty=0.8,
        max_new_tokens=8,
        **OUT,
    ),
    GenCase(
        "combined_sampling",
        CAPTION,
        "varied",
        PIX,
        {
            "do_sample": True,
            "temperature": 0.8,
            "top_k": 20,
            "top_p": 0.9,
            "typical_p": 0.8,
            "min_p": 0.05,
            "epsilon_cutoff": 0.01,
            "eta_cutoff": 0.02,
            "max_new_tokens": 1,
            **OUT,
        },
        first_step_only=True,
    ),
    GenCase(
        "combined_group",
        VQA,
        "eos",
        QUESTION,
        {**_GROUP, "diversity_penalty": 0.6, "num_return_sequences": 2, "no_repeat_ngram_size": 2, "max_new_tokens": 6},
    ),
]


def tf_params(cases: list[GenCase]) -> list[Any]:
    """`cases` as pytest parameters for a test that runs them through TF: outside the quick set, slow."""
    import pytest

    return [
        pytest.param(case, id=case.name, marks=() if case.name in TF_QUICK_CASES else pytest.mark.slow)
        for case in cases
    ]


def checkpoint_config(text_fields: dict[str, Any]) -> dict[str, Any]:
    """The config.json of a "varied" captioning checkpoint whose text config holds `text_fields`."""
    from tests.helpers.tiny import generation_model

    config = generation_model(CAPTION, "varied")[0].to_diff_dict()
    config["text_config"].update(text_fields)
    config["architectures"] = [CAPTION]
    return config


def write_case_checkpoint(folder: Any, text_fields: dict[str, Any], generation: dict | None = None) -> Any:
    """A checkpoint folder (config.json, model.safetensors, optionally generation_config.json), the same
    files for the oracle script and the tests."""
    import json
    from pathlib import Path

    from blip_core.checkpoints.sources import save_safetensors
    from blip_core.weights import saved_names
    from tests.helpers.tiny import generation_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config, weights = generation_model(CAPTION, "varied")
    names = saved_names(list(weights), CAPTION, config)
    save_safetensors(folder / "model.safetensors", {name: weights[name] for name in names})
    (folder / "config.json").write_text(json.dumps(checkpoint_config(text_fields), indent=2, sort_keys=True))
    if generation is not None:
        (folder / "generation_config.json").write_text(json.dumps(generation, indent=2, sort_keys=True))
    return folder
