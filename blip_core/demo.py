"""`python -m blip_core.demo`: caption one image with blip_torch and blip_tf from one random checkpoint.

Until trained weights ship, this proves the two trees agree: a small random
BLIP captioner (real BERT vocabulary) is written in the Hub's layout, both
frameworks load it, caption the same image, and the largest logit
difference is printed. The captions are random words: the weights are.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from blip_core.configuration import BlipConfig
from blip_core.image_processing import BlipImageProcessor
from blip_core.processing import BlipProcessor
from blip_core.tokenization import BUNDLED_VOCAB_FILE, BlipTokenizer

DEMO_CONFIG = {
    "text_config": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4},
    "vision_config": {
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 96,
        "patch_size": 16,
    },
}


def demo_image() -> np.ndarray:
    """A colourful 120x160 test card: gradients and a disc."""
    y, x = np.mgrid[0:120, 0:160]
    image = np.stack([x * 255 / 160, y * 255 / 120, np.full_like(x, 90)], axis=-1)
    image[(y - 60) ** 2 + (x - 80) ** 2 < 30**2] = (230, 40, 40)
    return image.astype(np.uint8)


def write_random_checkpoint(folder: Path) -> None:
    import torch

    from blip_torch import BlipForConditionalGeneration

    torch.manual_seed(0)
    config = BlipConfig(**DEMO_CONFIG)
    model = BlipForConditionalGeneration(config)
    with torch.no_grad():  # spread the weights so the two frameworks have real numbers to agree on
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    model.save_pretrained(folder)
    processor = BlipProcessor(BlipImageProcessor(size=96), BlipTokenizer(vocab_file=BUNDLED_VOCAB_FILE))
    processor.save_pretrained(folder)


def main() -> int:
    import torch

    from blip_tf import TFBlipForConditionalGeneration
    from blip_torch import BlipForConditionalGeneration

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_random_checkpoint(folder)
        processor = BlipProcessor.from_pretrained(folder)
        inputs = processor(images=demo_image(), text="a picture of", return_tensors="np")
        torch_model = BlipForConditionalGeneration.from_pretrained(folder)
        tf_model = TFBlipForConditionalGeneration.from_pretrained(folder)
        with torch.no_grad():
            torch_logits = torch_model(
                pixel_values=torch.from_numpy(inputs["pixel_values"]), input_ids=torch.from_numpy(inputs["input_ids"])
            ).logits.numpy()
        tf_logits = tf_model(pixel_values=inputs["pixel_values"], input_ids=inputs["input_ids"]).logits.numpy()
        start = time.perf_counter()
        torch_ids = torch_model.generate(torch.from_numpy(inputs["pixel_values"]), max_new_tokens=12).numpy()
        torch_time = time.perf_counter() - start
        start = time.perf_counter()
        tf_ids = tf_model.generate(inputs["pixel_values"], max_new_tokens=12).numpy()
        tf_time = time.perf_counter() - start
    print("random BLIP captioner (untrained weights, so the words are random)")
    print(f"  blip_torch: {processor.decode(torch_ids[0], skip_special_tokens=True)!r}  ({torch_time:.2f}s)")
    tf_caption = processor.decode(tf_ids[0], skip_special_tokens=True)
    print(f"  blip_tf:    {tf_caption!r}  ({tf_time:.2f}s, first call compiles)")
    difference = float(np.abs(torch_logits - tf_logits).max())
    print(f"  same ids: {np.array_equal(torch_ids, tf_ids)}; max |logit difference|: {difference:.2e}")
    return 0 if np.array_equal(torch_ids, tf_ids) and difference < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
