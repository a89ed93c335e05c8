"""The models the pipeline golden cases run: the embedded demo models and a small `BlipModel`.

The demo models (trained on synthetic shapes) caption, answer and match for real, so a mixed-up
image, question or option shows in the text. The zero-shot case needs a `BlipModel` (what
`transformers` runs zero-shot with); none is embedded, so one is built from a seed with weights
spread wide enough that its scores differ between labels and images.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from blip_core.demo.tasks import DEMO_MODELS_DIR
from tests.helpers.small import SMALL

ZERO_SHOT_SEED, ZERO_SHOT_SPREAD = 1, 0.3


def write_zero_shot_model(folder: Path) -> Path:
    """A small seeded `BlipModel` with its processor files in `folder` (made with blip_torch).

    The tokenizer is left as `vocab.txt` alone: `transformers` and blip_core then build the same
    BERT tokenizer from it, whatever `tokenizer.json` details either writes.
    """
    import torch

    import blip_torch
    from blip_core import BlipConfig, BlipImageProcessor, BlipProcessor, BlipTokenizer
    from blip_core.processing.tokenization import BUNDLED_VOCAB_FILE

    torch.manual_seed(ZERO_SHOT_SEED)
    model = blip_torch.BlipModel(BlipConfig(**SMALL))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * ZERO_SHOT_SPREAD)
    model.save_pretrained(folder)
    BlipProcessor(BlipImageProcessor(size=48), BlipTokenizer(vocab_file=BUNDLED_VOCAB_FILE)).save_pretrained(folder)
    (folder / "tokenizer.json").unlink()
    return folder


def model_folders(zero_shot_folder: Path) -> dict[str, Path]:
    """Case model key -> folder."""
    return {
        "caption": DEMO_MODELS_DIR / "BlipForConditionalGeneration",
        "vqa": DEMO_MODELS_DIR / "BlipForQuestionAnswering",
        "itm": DEMO_MODELS_DIR / "BlipForImageTextRetrieval",
        "blip_model": zero_shot_folder,
    }


def weights_digest(folder: Path) -> str:
    """sha256 of a folder's weights (names, dtypes, shapes, bytes): the golden file records which it saw."""
    from safetensors.numpy import load_file

    digest = hashlib.sha256()
    for name, array in sorted(load_file(str(folder / "model.safetensors")).items()):
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
