"""The workloads `caption_speed.py` times, in each framework, and their floors on this machine.

Base-size random checkpoints (ViT-B/16 at 384, BERT-base text, 12 heads) for captioning, VQA and retrieval are
written once; every worker process loads them and runs, on the same inputs:

- caption batch 1, greedy, exactly 20 new tokens (EOS held off by `min_new_tokens`);
- VQA batch 1, exactly 10 new tokens;
- caption batch 8, beam 3, exactly 20 new tokens;
- the vision encoder on batch 8;
- ITM on batch 8 (image-text pairs, 12 text tokens).

`floor_s` is the roofline of a workload: its matmul FLOPs at the machine's measured matmul peak for the dtype,
plus the bytes each decoding step must read (the decoder's weights, the image keys/values) at its measured
bandwidth, whichever bound each part hits. A time's fraction of its floor says how close it is to the machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NEW_TOKENS = 20
VQA_TOKENS = 10
QUESTION = [101, 2054, 3609, 2003, 1996, 4874, 1029, 102]  # "[CLS] what color is the object? [SEP]"
WORKLOADS = ("caption_b1", "vqa_b1", "caption_b8_beam3", "vision_b8", "itm_b8")
CLASSES = {
    "caption": "BlipForConditionalGeneration",
    "vqa": "BlipForQuestionAnswering",
    "itm": "BlipForImageTextRetrieval",
}


def make_checkpoints(folder: Path) -> None:
    """One random base-size checkpoint per head class, under folder/<caption|vqa|itm>."""
    import torch

    import blip_torch
    from blip_core import BlipConfig

    for kind, name in CLASSES.items():
        torch.manual_seed(0)
        getattr(blip_torch, name)(BlipConfig(text_config={"num_attention_heads": 12})).save_pretrained(folder / kind)


def pixels(batch: int) -> np.ndarray:
    return np.random.RandomState(batch).randn(batch, 3, 384, 384).astype("float32")


def load(framework: str, kind: str, folder: Path, dtype: str, quantization: str | None):
    """(model, to_tensor): a model of `kind` and the function turning NumPy arrays into its inputs."""
    quantization = quantization if kind != "itm" else None  # nothing to quantize without a text decoder
    extra = {"quantization": quantization} if quantization else {}
    if framework == "tf":
        import blip_tf

        model = getattr(blip_tf, "TF" + CLASSES[kind]).from_pretrained(folder / kind, dtype=dtype, **extra)
        return model, lambda x: x
    import torch

    if framework == "torch":
        import blip_torch as library
    else:
        import transformers as library

        library.logging.set_verbosity_error()
    torch_dtype = getattr(torch, dtype)
    model = getattr(library, CLASSES[kind]).from_pretrained(folder / kind, torch_dtype=torch_dtype, **extra).eval()

    def to_tensor(x: np.ndarray):
        tensor = torch.from_numpy(x)
        return tensor.to(torch_dtype) if tensor.is_floating_point() else tensor

    return model, to_tensor


def runners(framework: str, models: dict, inputs: dict) -> dict:
    """The callable of each workload."""
    caption, vqa, itm = models["caption"], models["vqa"], models["itm"]
    lengths = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS}
    vqa_lengths = {"max_new_tokens": VQA_TOKENS, "min_new_tokens": VQA_TOKENS}
    one, eight, question, texts = inputs["one"], inputs["eight"], inputs["question"], inputs["texts"]
    vision_kwargs = {"training": False} if framework == "tf" else {}
    return {
        "caption_b1": lambda: caption.generate(pixel_values=one, **lengths),
        "vqa_b1": lambda: vqa.generate(input_ids=question, pixel_values=one, **vqa_lengths),
        "caption_b8_beam3": lambda: caption.generate(pixel_values=eight, num_beams=3, **lengths),
        "vision_b8": lambda: itm.vision_model(pixel_values=eight, **vision_kwargs),
        "itm_b8": lambda: itm(input_ids=texts, pixel_values=eight, use_itm_head=True, **vision_kwargs),
    }


def inputs_for(to_tensor) -> dict:
    texts = np.random.RandomState(0).randint(1000, 30000, size=(8, 12))
    texts[:, 0], texts[:, -1] = 101, 102
    return {
        "one": to_tensor(pixels(1)),
        "eight": to_tensor(pixels(8)),
        "question": to_tensor(np.array([QUESTION], dtype=np.int64)),
        "texts": to_tensor(texts.astype(np.int64)),
    }


# -- floors -----------------------------------------------------------------------------------------------------

HIDDEN, INTERMEDIATE, LAYERS, TOKENS, VOCAB, PATCH = 768, 3072, 12, 577, 30524, 16
DECODER_LINEAR_PARAMS = LAYERS * (6 * HIDDEN * HIDDEN + 2 * HIDDEN * INTERMEDIATE) + HIDDEN * HIDDEN + HIDDEN * VOCAB


def vision_flops(batch: int) -> float:
    """Matmul FLOPs of ViT-B/16 at 384 (577 tokens) on `batch` images."""
    per_layer = 2 * TOKENS * HIDDEN * (3 * HIDDEN + HIDDEN + 2 * INTERMEDIATE) + 4 * TOKENS * TOKENS * HIDDEN
    return batch * (LAYERS * per_layer + 2 * (TOKENS - 1) * 3 * PATCH * PATCH * HIDDEN)


def image_kv_flops(images: int) -> float:
    """Projecting the image tokens to cross-attention keys and values, every text layer."""
    return images * LAYERS * 2 * 2 * TOKENS * HIDDEN * HIDDEN


def decode_floor(rows: int, images: int, steps: int, weight_bytes: float, kv_bytes: float, peak: float, bw: float):
    """Steps of `rows` tokens: each reads the decoder weights and the images' keys/values, or is compute-bound."""
    read = weight_bytes * DECODER_LINEAR_PARAMS + images * LAYERS * 2 * TOKENS * HIDDEN * kv_bytes
    compute = 2 * rows * DECODER_LINEAR_PARAMS + rows * LAYERS * 4 * TOKENS * HIDDEN
    return steps * max(read / bw, compute / peak)


def floors(dtype: str, quantization: str | None, limits: dict[str, float]) -> dict[str, float]:
    """Each workload's floor in seconds (see the module docstring) from `machine.limits()`."""
    name = "bfloat16" if dtype == "bfloat16" else "float32"
    peak = limits[f"matmul {name} ViT-B (8x577 tokens, 768->3072) GFLOP/s"] * 1e9
    if name == "float32":  # the faster of PyTorch's two float32 GEMMs (MKL, oneDNN) is the machine's limit
        peak = max(peak, limits.get("matmul float32 ViT-B, oneDNN GFLOP/s", 0) * 1e9)
    bw = limits["memory bandwidth GB/s (copy)"] * 1e9
    weight_bytes = 1 if quantization == "int8" else (2 if name == "bfloat16" else 4)
    kv_bytes = 4  # the image keys/values are read in float32 during decoding (blip_torch.decoding)
    return {
        "caption_b1": (vision_flops(1) + image_kv_flops(1)) / peak
        + decode_floor(1, 1, NEW_TOKENS, weight_bytes, kv_bytes, peak, bw),
        "vqa_b1": (vision_flops(1) + 2 * image_kv_flops(1)) / peak
        + decode_floor(1, 1, VQA_TOKENS, weight_bytes, kv_bytes, peak, bw),
        "caption_b8_beam3": (vision_flops(8) + image_kv_flops(8)) / peak
        + decode_floor(24, 8, NEW_TOKENS, weight_bytes, kv_bytes, peak, bw),
        "vision_b8": vision_flops(8) / peak,
        "itm_b8": (vision_flops(8) + image_kv_flops(8)) / peak,
    }
