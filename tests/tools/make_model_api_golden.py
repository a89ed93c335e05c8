"""Regenerate tests/golden/model_api.json: what `transformers` 4.57.6's BLIP models answer to the model methods
programs call (`num_parameters`, `get_memory_footprint`, `name_or_path`, `config.dtype` after loading,
gradient checkpointing flags), on the checkpoints in tests/fixtures/hf_checkpoints.

Run from the repository root in the oracle environment (transformers 4.57.6, torch):

    .venv-oracle/bin/python -m tests.tools.make_model_api_golden
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {
    "BlipForConditionalGeneration": "tests/fixtures/hf_checkpoints/caption_safetensors",
    "BlipForQuestionAnswering": "tests/fixtures/hf_checkpoints/vqa_safetensors",
}


def answers(class_name: str, folder: str) -> dict:
    model = getattr(transformers, class_name).from_pretrained(folder)
    out = {
        "num_parameters": model.num_parameters(),
        "only_trainable": model.num_parameters(only_trainable=True),
        "exclude_embeddings": model.num_parameters(exclude_embeddings=True),
        "footprint_without_buffers": model.get_memory_footprint(return_buffers=False),
        "name_or_path": model.name_or_path,
        "config_dtype": str(model.config.dtype),
        "supports_gradient_checkpointing": model.supports_gradient_checkpointing,
    }
    model.vision_model.requires_grad_(False)
    out["only_trainable_frozen_vision"] = model.num_parameters(only_trainable=True)
    model.gradient_checkpointing_enable()
    out["is_gradient_checkpointing"] = model.is_gradient_checkpointing
    half = getattr(transformers, class_name).from_pretrained(folder, dtype=torch.float16)
    out["half_config_dtype"] = str(half.config.dtype)
    out["half_saved_dtype"] = half.config.to_dict()["dtype"]
    out["half_footprint_without_buffers"] = half.get_memory_footprint(return_buffers=False)
    return out


def main() -> None:
    out = {"versions": {"transformers": transformers.__version__, "torch": torch.__version__}}
    out["models"] = {name: answers(name, folder) for name, folder in FOLDERS.items()}
    path = ROOT / "tests" / "golden" / "model_api.json"
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
