"""Small models with the real BERT vocabulary (so processor ids fit) and their processor files."""

from __future__ import annotations

from pathlib import Path

from blip_core import BlipConfig, BlipImageProcessor, BlipProcessor, BlipTokenizer
from blip_core.processing.tokenization import BUNDLED_VOCAB_FILE

SMALL = {
    "text_config": {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4},
    "vision_config": {
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 48,
        "patch_size": 16,
    },
}
SMALL_CLASSES = ("BlipForConditionalGeneration", "BlipForQuestionAnswering", "BlipForImageTextRetrieval", "BlipModel")


def write_small_models(root: Path) -> dict[str, Path]:
    """class name -> folder with config.json, model.safetensors and the Hub's processor files."""
    import torch

    import blip_torch

    folders = {}
    for name in SMALL_CLASSES:
        torch.manual_seed(0)
        model = getattr(blip_torch, name)(BlipConfig(**SMALL))
        with torch.no_grad():  # spread the weights so outputs differ between inputs
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)
        folders[name] = root / name
        model.save_pretrained(folders[name])
        BlipProcessor(BlipImageProcessor(size=48), BlipTokenizer(vocab_file=BUNDLED_VOCAB_FILE)).save_pretrained(
            folders[name]
        )
    return folders
