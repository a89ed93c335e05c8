"""Where a caption's time goes in `blip_torch`, per mode, and what the one-row products of decoding can reach.

1. The one-row product (decoding's, memory-bound) by weight dtype and kernel: GB/s of weights streamed, over 200
   weights (beyond every cache), for MKL and oneDNN float32, oneDNN bfloat16 and PyTorch's int8 weight-only kernel.
2. For each mode (float32, bfloat16, bfloat16 + int8): a random base-size captioner captions one image (20 new
   tokens) under `torch.profiler`; the heaviest operations by input shape, the vision encoder's time and the time
   per decoding step.

    python benchmarks/decode_profile.py                 # both parts
    python benchmarks/decode_profile.py --modes bf16+int8 --rows 15
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from machine import print_description  # benchmarks/machine.py, beside this script

MODES = {"fp32": ("float32", None), "bf16": ("bfloat16", None), "bf16+int8": ("bfloat16", "int8")}
NEW_TOKENS = 20


def streamed(product, weights: list[torch.Tensor]) -> float:
    """GB/s of weight bytes a one-row `product(weight)` streams over `weights` (best of 5 passes)."""
    for weight in weights[:3]:
        product(weight)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for weight in weights:
            product(weight)
        best = min(best, time.perf_counter() - start)
    return sum(w.numel() * w.element_size() for w in weights) / best / 1e9


def one_row_products() -> None:
    print("\none-row products, 768 -> 3072, 200 weights: GB/s of weights streamed")
    torch.manual_seed(0)
    float32 = [torch.randn(3072, 768) for _ in range(200)]
    bfloat16 = [w.bfloat16() for w in float32]
    int8 = [torch.randint(-127, 128, (3072, 768), dtype=torch.int8) for _ in range(200)]
    row, scales = torch.randn(1, 768), torch.rand(3072).bfloat16()
    cases = {
        "float32, MKL (F.linear)": (lambda w: torch.nn.functional.linear(row, w), float32),
        "float32, oneDNN": (lambda w: torch.ops.mkldnn._linear_pointwise(row, w, None, "none", [], ""), float32),
        "bfloat16, oneDNN (F.linear)": (lambda w: torch.nn.functional.linear(row.bfloat16(), w), bfloat16),
        "int8 weights, aten._weight_int8pack_mm": (
            lambda w: torch.ops.aten._weight_int8pack_mm(row.bfloat16(), w, scales),
            int8,
        ),
    }
    with torch.no_grad():
        for name, (product, weights) in cases.items():
            print(f"  {name:<42} {streamed(product, weights):6.1f}")


def profile_mode(folder: Path, mode: str, rows: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    from blip_torch import BlipForConditionalGeneration

    dtype, quantization = MODES[mode]
    model = BlipForConditionalGeneration.from_pretrained(folder, torch_dtype=dtype, quantization=quantization)
    pixels = torch.randn(1, 3, 384, 384, generator=torch.Generator().manual_seed(0)).to(model.dtype)
    lengths = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS}
    with torch.no_grad():
        model.generate(pixel_values=pixels, **lengths)
        start = time.perf_counter()
        model.vision_model(pixel_values=pixels)
        vision = time.perf_counter() - start
        start = time.perf_counter()
        model.generate(pixel_values=pixels, **lengths)
        total = time.perf_counter() - start
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiled:
            model.generate(pixel_values=pixels, **lengths)
    step = (total - vision) / NEW_TOKENS
    print(f"\n{mode}: caption {total:.3f} s = vision {vision:.3f} s + {NEW_TOKENS} steps of {step * 1e3:.1f} ms")
    table = profiled.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=rows)
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=list(MODES))
    parser.add_argument("--rows", type=int, default=12, help="operations listed per mode")
    parser.add_argument("--no-products", action="store_true", help="skip the one-row product measurements")
    args = parser.parse_args()
    print_description()
    if not args.no_products:
        one_row_products()
    from blip_core import BlipConfig
    from blip_torch import BlipForConditionalGeneration

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        BlipForConditionalGeneration(BlipConfig(text_config={"num_attention_heads": 12})).save_pretrained(tmp)
        for mode in args.modes:
            profile_mode(Path(tmp), mode, args.rows)


if __name__ == "__main__":
    main()
