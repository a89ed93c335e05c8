"""Regenerate the model golden files from `transformers` 4.57.6 PyTorch BLIP (the oracle).

    pip install -e '.[torch,test,oracle]'   # plus tf-keras for the TF checkpoint fixture
    python -m tests.tools.make_torch_golden

Writes tests/golden/models.npz (inputs, outputs of every case, generated ids),
tests/golden/models.json (versions, weight hashes), and checkpoints saved by
`transformers` itself under tests/fixtures/hf_checkpoints/.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers

from tests.helpers.compare import flatten
from tests.helpers.model_cases import FORWARD_CASES, GENERATION_CASES, make_inputs
from tests.helpers.tiny import (
    TINY_TEXT,
    TINY_TOP,
    TINY_VISION,
    VQA_TEXT,
    generation_model,
    seeded_weights,
    weights_hash,
)

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
CHECKPOINTS = ROOT / "tests" / "fixtures" / "hf_checkpoints"
# The fixture folders this script writes (other scripts write other folders there; they are left alone).
OWN_FOLDERS = ("caption_safetensors", "caption_bin", "vqa_safetensors", "itm_bin", "vision_safetensors", "caption_tf")


def hf_config(class_name: str, tie: bool = True) -> transformers.BlipConfig:
    text = {**TINY_TEXT, **(VQA_TEXT if class_name == "BlipForQuestionAnswering" else {}), "tie_word_embeddings": tie}
    return transformers.BlipConfig(text_config=text, vision_config=dict(TINY_VISION), **TINY_TOP)


def hf_sub_config(class_name: str, config: transformers.BlipConfig):
    if class_name == "BlipVisionModel":
        return config.vision_config
    if class_name.startswith("BlipText"):
        return config.text_config
    return config


def build(class_name: str, variant: str = "plain"):
    config, weights = (
        generation_model(class_name, variant) if variant != "plain" else (None, seeded_weights(class_name))
    )
    tie = config is None or config.text_config.tie_word_embeddings
    model = getattr(transformers, class_name)(hf_sub_config(class_name, hf_config(class_name, tie))).eval()
    result = model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    assert not result.unexpected_keys and not result.missing_keys, result
    return model, weights_hash(weights)


def torch_inputs(case, inputs):
    return {arg: torch.from_numpy(inputs[key].copy()) for arg, key in case.inputs.items()}


def main() -> None:
    torch.manual_seed(0)
    inputs = make_inputs()
    store = {f"input::{name}": value for name, value in inputs.items()}
    models, hashes = {}, {}
    for case in FORWARD_CASES + GENERATION_CASES:
        key = case.class_name if case.variant == "plain" else f"{case.class_name}:{case.variant}"
        if key not in models:
            models[key], hashes[key] = build(case.class_name, case.variant)
        model = models[key]
        with torch.no_grad():
            out = getattr(model, case.method)(**torch_inputs(case, inputs), **case.kwargs)
        if case.method == "generate":
            store[f"gen::{case.name}"] = out.numpy()
        else:
            for path, value in flatten(out).items():
                store[f"{case.name}::{path}"] = value
    np.savez_compressed(GOLDEN / "models.npz", **store)
    meta = {"made_by": {"transformers": transformers.__version__, "torch": torch.__version__}, "weights_sha256": hashes}
    (GOLDEN / "models.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    save_checkpoints(models, inputs)
    print("wrote", GOLDEN / "models.npz", len(store), "arrays")


def save_checkpoints(models, inputs) -> None:
    """Checkpoints as `transformers` writes them: safetensors, .bin, and the TF port's tf_model.h5."""
    for name in OWN_FOLDERS:
        shutil.rmtree(CHECKPOINTS / name, ignore_errors=True)
    models["BlipForConditionalGeneration"].save_pretrained(CHECKPOINTS / "caption_safetensors")
    models["BlipForConditionalGeneration"].save_pretrained(CHECKPOINTS / "caption_bin", safe_serialization=False)
    models["BlipForQuestionAnswering"].save_pretrained(CHECKPOINTS / "vqa_safetensors")
    models["BlipForImageTextRetrieval"].save_pretrained(CHECKPOINTS / "itm_bin", safe_serialization=False)
    models["BlipVisionModel"].save_pretrained(CHECKPOINTS / "vision_safetensors")
    save_tf_checkpoint(inputs)


def save_tf_checkpoint(inputs) -> None:
    """The TF port loads the PyTorch file (its decoder stays random, REFERENCE §0.5) and saves tf_model.h5."""
    with tempfile.TemporaryDirectory() as folder:
        shutil.copytree(CHECKPOINTS / "caption_safetensors", folder, dirs_exist_ok=True)
        config = json.loads((Path(folder) / "config.json").read_text())
        config["vision_config"]["num_channels"] = 3
        (Path(folder) / "config.json").write_text(json.dumps(config))
        tf_model = transformers.TFBlipForConditionalGeneration.from_pretrained(folder, from_pt=True)
        target = CHECKPOINTS / "caption_tf"
        tf_model.save_pretrained(target)
        out = tf_model(
            pixel_values=inputs["pixel_values"],
            input_ids=inputs["input_ids_full"],
            attention_mask=np.ones_like(inputs["input_ids_full"]),
        )
        np.savez_compressed(
            GOLDEN / "tf_port_caption.npz", logits=out.logits.numpy(), image_embeds=out.image_embeds.numpy()
        )
        (target / "generation_config.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
