"""Record `transformers`' generation results for the cases of `tests/helpers/generation_cases.py`.

Two oracles, one script:

    .venv-oracle/bin/python -m tests.tools.make_generation_golden
        transformers 4.57.6: every case but group beam search, the settings held by the model
        (legacy text-config fields, generation_config=, checkpoints), GenerationConfig JSON and the
        config attributes. Writes tests/golden/generation.npz and generation.json.

    /work/venvs/oracle-old/bin/python -m tests.tools.make_generation_golden --group
        group (diverse) beam search. 4.57 moved it to a Hub `custom_generate` repo (network and
        trust_remote_code); 4.56.2 is the last release with the built-in `_group_beam_search`.
        Writes tests/golden/generation_group.npz and generation_group.json.

The old oracle's venv: `python -m venv /work/venvs/oracle-old`, then
`pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu` and
`pip install transformers==4.56.2 safetensors tokenizers huggingface_hub numpy` (or, as made here,
`pip install --no-deps transformers==4.56.2` plus a `.pth` file naming `.venv-oracle`'s
site-packages for the rest). Run both from the repository root.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import transformers

from tests.helpers.generation_cases import (
    ALL_CASES,
    CHECKPOINT_CASES,
    FULL_DUMP_FIELDS,
    SETUPS,
    TOP_LEVEL_GENERATION_CONFIG,
    make_generation_inputs,
    write_case_checkpoint,
)
from tests.tools.make_torch_golden import build

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"


def torch_inputs(case, inputs):
    return {arg: torch.from_numpy(inputs[key].copy()) for arg, key in case.inputs.items()}


def via_decoder(model, arguments, kwargs):
    """BLIP's captioning generate with its own end tokens: the text decoder's generate, called as BLIP does."""
    text = model.config.text_config
    embeds = model.vision_model(pixel_values=arguments["pixel_values"])[0]
    start = torch.full((embeds.shape[0], 1), text.bos_token_id)
    return model.text_decoder.generate(
        input_ids=start,
        pad_token_id=text.pad_token_id,
        encoder_hidden_states=embeds,
        encoder_attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
        **kwargs,
    )


def record(store: dict, name: str, model, out) -> None:
    """The ids, or every field of a dict output, plus `compute_transition_scores` of it."""
    if isinstance(out, torch.Tensor):
        store[f"{name}::sequences"] = out.numpy()
        return
    store[f"{name}::sequences"] = out.sequences.numpy()
    for key in ("scores", "logits"):
        if getattr(out, key, None) is not None:
            store[f"{name}::{key}"] = torch.stack(out[key]).numpy()
    for key in ("sequences_scores", "beam_indices"):
        if getattr(out, key, None) is not None:
            store[f"{name}::{key}"] = out[key].numpy()
    if getattr(out, "scores", None) is not None:
        indices = getattr(out, "beam_indices", None)
        for normalize in (False, True):
            scores = model.compute_transition_scores(out.sequences, out.scores, indices, normalize_logits=normalize)
            store[f"{name}::transition{'_normalized' if normalize else ''}"] = scores.numpy()


def run_cases(store: dict, group: bool) -> None:
    inputs = make_generation_inputs()
    models = {}
    for case in ALL_CASES:
        if (case.oracle == "4.56") != group:
            continue
        arguments = torch_inputs(case, inputs)
        if case.setup:
            model = build(case.class_name, case.variant)[0]
            extra = SETUPS[case.setup](model, transformers.GenerationConfig, arguments)
        else:
            key = (case.class_name, case.variant)
            if key not in models:
                models[key] = build(*key)[0]
            model, extra = models[key], {}
        torch.manual_seed(0)
        with torch.no_grad():
            if case.via_decoder:
                out = via_decoder(model, arguments, case.kwargs)
            else:
                out = model.generate(**arguments, **case.kwargs, **extra)
        record(store, case.name, model, out)


def run_checkpoints(store: dict, facts: dict) -> None:
    """Checkpoints whose config.json carries text-config generation fields, and a top-level
    generation_config.json; plus the generation_config.json `save_pretrained` writes."""
    pixels = torch.from_numpy(make_generation_inputs()["pixel_values"])
    with tempfile.TemporaryDirectory() as root:
        for name, fields in CHECKPOINT_CASES.items():
            folder = write_case_checkpoint(Path(root) / name, {**FULL_DUMP_FIELDS, **fields})
            model = transformers.BlipForConditionalGeneration.from_pretrained(folder).eval()
            with torch.no_grad():
                store[f"checkpoint_{name}::sequences"] = model.generate(pixels).numpy()
        folder = write_case_checkpoint(Path(root) / "top_level", {}, TOP_LEVEL_GENERATION_CONFIG)
        model = transformers.BlipForConditionalGeneration.from_pretrained(folder).eval()
        with torch.no_grad():
            store["checkpoint_top_level::sequences"] = model.generate(pixels).numpy()
        saved = Path(root) / "saved"
        build("BlipForConditionalGeneration", "varied")[0].save_pretrained(saved)
        facts["saved_generation_config"] = (saved / "generation_config.json").read_text()
        vqa = Path(root) / "saved_vqa"
        build("BlipForQuestionAnswering", "eos")[0].save_pretrained(vqa)
        facts["saved_vqa_generation_config"] = (vqa / "generation_config.json").read_text()


def config_facts(facts: dict) -> None:
    """Config attributes and GenerationConfig serialisation, as `transformers` has them."""
    from blip_core.config.configuration import GENERATION_DEFAULTS

    text = transformers.BlipTextConfig()
    facts["text_config_generation_fields"] = {name: getattr(text, name) for name in GENERATION_DEFAULTS}
    facts["blip_config_generation_fields"] = {
        name: getattr(transformers.BlipConfig(), name) for name in GENERATION_DEFAULTS
    }
    text.num_beams, text.max_length = 5, 40
    facts["text_config_diff_after_set"] = {k: text.to_diff_dict()[k] for k in ("num_beams", "max_length")}
    facts["non_default_generation_parameters"] = text._get_non_default_generation_parameters()
    config = transformers.BlipConfig()
    config.update({"projection_dim": 7, "brand_new_key": 3})
    facts["blip_config_after_update"] = {"projection_dim": config.projection_dim, "brand_new_key": config.brand_new_key}
    generation = transformers.GenerationConfig
    made = {
        "beam3_new30_custom": generation(num_beams=3, max_new_tokens=30, custom_key=[1, 2]),
        "sequence_bias": generation(sequence_bias={(1, 2): 0.5}, bad_words_ids=[[4], [5, 6]]),
        "from_text_config": generation.from_model_config(transformers.BlipTextConfig(bos_token_id=97, num_beams=4)),
        "from_blip_config": generation.from_model_config(transformers.BlipConfig(text_config={"max_length": 9})),
        "output_flags": generation.from_model_config(transformers.BlipTextConfig(output_scores=True)),
    }
    facts["generation_config_json"] = {name: value.to_json_string() for name, value in made.items()}
    facts["generation_config_full_dict_keys"] = sorted(generation().to_dict())
    unused = generation.from_dict({"num_beams": 2}, top_k=3, return_unused_kwargs=True)[1]
    facts["from_dict_unused"] = unused
    facts["equal_ignoring_metadata"] = generation(num_beams=2) == generation(num_beams=2, transformers_version="4.0.0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", action="store_true", help="group beam search cases (transformers 4.56.x)")
    group = parser.parse_args().group
    version = transformers.__version__
    wanted = "4.56." if group else "4.57.6"
    if not version.startswith(wanted):
        raise SystemExit(f"this run needs transformers {wanted}*, found {version} (see the module docstring)")
    warnings.simplefilter("ignore")
    store: dict[str, np.ndarray] = {}
    facts: dict = {"made_by": {"transformers": version, "torch": torch.__version__}}
    run_cases(store, group)
    if not group:
        run_checkpoints(store, facts)
        config_facts(facts)
    stem = "generation_group" if group else "generation"
    np.savez_compressed(GOLDEN / f"{stem}.npz", **store)
    (GOLDEN / f"{stem}.json").write_text(json.dumps(facts, indent=1, sort_keys=True, default=str) + "\n")
    print("wrote", GOLDEN / f"{stem}.npz", len(store), "arrays")


if __name__ == "__main__":
    main()
