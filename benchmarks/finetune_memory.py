"""Memory of one BLIP captioning training step per worker: measured on CPU, computed for GPU.

Random-weight captioners at the Hub sizes (no downloads): base (ViT-B/16, 384 px, BERT-base text with
12 heads, vocabulary 30524) and large (ViT-L/16: vision hidden 1024, 24 layers, MLP 4096, 16 heads;
text as base, cross-attention from 1024). Every case runs in a fresh process: two training steps
(forward, `blip_torch.training.caption_loss` with its label smoothing, backward, optimizer step,
`zero_grad(set_to_none=True)`) on random pixels (B, 3, 384, 384) and random caption ids of length 30
(BOS first, all labelled). The second step is the steady state: the optimizer's states exist then.

Measured: `peak` = ru_maxrss after the steps - RSS after the imports (so the weights, optimizer states,
gradients, activations and the batch). Glibc's mmap threshold is pinned (MALLOC_MMAP_THRESHOLD_) so
freed tensors leave RSS and the peak is the live memory, not malloc's retained heap.

Computed, with P parameters (tied decoder matrix counted once) and every training state in fp32:
    static     = weights 4P + gradients 4P + optimizer  (AdamW: 2 moments = 8P; plain SGD: 0)  bytes
    activation(B) = peak(B) - static      (what the forward saves for the backward, plus transients)
    a, c       = per-example slope and fixed part of activation(B), fitted over the measured batches
    GPU(B)     = 16P + c + a * B          (fp32 AdamW, or bf16 autocast with its own a, c)
bf16 autocast keeps the fp32 weights as the master copy, so the static 16P does not change; it adds a
cached bf16 copy of the weights (2P, inside c) and saves only ~20% of the activations (layer norms, the
residual stream, softmax and the loss stay fp32 under autocast). c can be negative: at the peak (end of
the forward) most gradients are not allocated yet, so 16P over-counts them. The GPU figure is
what the PyTorch allocator must hold (torch.cuda.max_memory_allocated); add the CUDA context
(~0.5 GiB) and allocator slack (~5-10%) for nvidia-smi. A case whose rough need exceeds the
memory available now (MemAvailable) is skipped and said so.

    python benchmarks/finetune_memory.py            # all cases, a few minutes on 2 cores
    python benchmarks/finetune_memory.py --sizes base
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

GIB = 2**30
TEXT_LENGTH = 30
LARGE_VISION = {"hidden_size": 1024, "num_hidden_layers": 24, "intermediate_size": 4096, "num_attention_heads": 16}
# (size, optimizer, precision, batch, gradient checkpointing)
CASES = [
    ("base", "adamw", "fp32", 1, False),
    ("base", "adamw", "fp32", 4, False),
    ("base", "adamw", "fp32", 8, False),
    ("base", "adamw", "bf16", 1, False),
    ("base", "adamw", "bf16", 8, False),
    ("base", "adamw", "fp32", 8, True),
    ("base", "sgd", "fp32", 8, False),
    ("large", "adamw", "fp32", 1, False),
    ("large", "adamw", "fp32", 4, False),
    ("large", "adamw", "bf16", 1, False),
    ("large", "adamw", "bf16", 4, False),
]
GPU_BATCHES = (8, 16, 32)
ROUGH_NEED_GIB = {"base": (3.5, 0.5), "large": (7.5, 1.0)}  # (static, per example) to decide whether a case fits


def available() -> int:
    """MemAvailable bytes from /proc/meminfo; a huge number where that file is missing."""
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2**62


def current_rss() -> int:
    """Resident bytes now (VmRSS from /proc/self/status); 0 where that file is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def config(size: str):
    """The BlipConfig of a Hub captioner size ('base' or 'large'); raises ValueError otherwise."""
    from blip_core import BlipConfig

    if size not in ("base", "large"):
        raise ValueError(f"size must be 'base' or 'large', got {size!r}")
    text = {"num_attention_heads": 12, "encoder_hidden_size": 768 if size == "base" else 1024}
    vision = {} if size == "base" else dict(LARGE_VISION)
    return BlipConfig(text_config=text, vision_config={"image_size": 384, "patch_size": 16, **vision})


def run_case(size: str, optimizer: str, precision: str, batch: int, checkpointing: bool) -> dict:
    """Two training steps in this process; the parameter count and peak bytes above the post-import RSS."""
    import numpy as np
    import torch

    from blip_torch import BlipForConditionalGeneration
    from blip_torch.training import caption_loss

    baseline = current_rss()
    torch.manual_seed(0)
    cfg = config(size)
    model = BlipForConditionalGeneration(cfg).train()
    if checkpointing:
        model.gradient_checkpointing_enable()
    params = sum(p.numel() for p in model.parameters())
    state = np.random.RandomState(batch)
    ids = state.randint(1000, 30000, size=(batch, TEXT_LENGTH)).astype("int64")
    ids[:, 0] = cfg.text_config.bos_token_id
    inputs = {
        "pixel_values": torch.from_numpy(state.randn(batch, 3, 384, 384).astype("float32")),
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.ones(batch, TEXT_LENGTH, dtype=torch.int64),
        "labels": torch.from_numpy(ids.copy()),
    }
    if optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.05)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(2):
        with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            loss = caption_loss(model, inputs)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    return {"params": params, "peak": peak, "losses": losses}


def measure(case: tuple, timeout: float) -> dict | None:
    """Run one case in a fresh interpreter; its result, or None (reason printed) when it failed."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    command = [sys.executable, __file__, "--child", json.dumps(case)]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        print(f"  {case}: timed out after {timeout:.0f} s", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(f"  {case}: failed (rc {done.returncode}): {done.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def static_bytes(params: int, optimizer: str) -> int:
    """fp32 weights + gradients (+ AdamW's two moments) for `params` parameters."""
    return params * 4 * (4 if optimizer == "adamw" else 2)


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(slope per example, fixed part) of a least-squares line through (batch, bytes); slope 0 for one point."""
    if len({b for b, _ in points}) < 2:
        return points[0][1] / points[0][0], 0.0
    mean_b = sum(b for b, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    slope = sum((b - mean_b) * (y - mean_y) for b, y in points) / sum((b - mean_b) ** 2 for b, _ in points)
    return slope, mean_y - slope * mean_b


def gib(value: float) -> str:
    """Bytes as GiB with two decimals."""
    return f"{value / GIB:.2f}"


def print_measured(results: list[tuple[tuple, dict]]) -> None:
    """The measured table: one row per case."""
    print("\n### Measured on this CPU (peak RSS above the post-import baseline, GiB)\n")
    print("| model | optimizer | precision | batch | grad. checkpointing | params (M) | static | peak | activations |")
    print("|---|---|---|---:|---|---:|---:|---:|---:|")
    for (size, optimizer, precision, batch, ckpt), found in results:
        static = static_bytes(found["params"], optimizer)
        print(
            f"| {size} | {optimizer} | {precision} | {batch} | {'yes' if ckpt else 'no'} | "
            f"{found['params'] / 1e6:.1f} | {gib(static)} | {gib(found['peak'])} | {gib(found['peak'] - static)} |"
        )


def print_computed(results: list[tuple[tuple, dict]]) -> None:
    """The GPU table: 16P + c + a*B per size and precision, from the non-checkpointed measurements."""
    print("\n### Computed for one GPU worker, AdamW (GiB, allocator peak; add ~0.5 GiB CUDA context)\n")
    print(
        "| model | precision | params (M) | 16P static | activations / example | "
        + " | ".join(f"batch {b}" for b in GPU_BATCHES)
        + " |"
    )
    print("|---|---|---:|---:|---:|" + "---:|" * len(GPU_BATCHES))
    for size in ("base", "large"):
        for precision in ("fp32", "bf16"):
            rows = [(c, r) for c, r in results if c[0] == size and c[2] == precision and not c[4]]
            if not rows:
                continue
            params = rows[0][1]["params"]
            slope, fixed = fit([(c[3], r["peak"] - static_bytes(r["params"], c[1])) for c, r in rows])
            static = static_bytes(params, "adamw")
            totals = " | ".join(gib(static + fixed + slope * b) for b in GPU_BATCHES)
            print(f"| {size} | {precision} | {params / 1e6:.1f} | {gib(static)} | {gib(slope)} | {totals} |")


def main() -> None:
    """Parse arguments; as a child run one case, else run the cases and print both tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="base,large", help="comma-separated: base,large")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(*json.loads(args.child))))
        return
    sizes = set(args.sizes.split(","))
    results = []
    for case in (c for c in CASES if c[0] in sizes):
        static, per_example = ROUGH_NEED_GIB[case[0]]
        need = (static + per_example * case[3] + 2.0) * GIB
        if need > available():
            print(f"skipped {case}: needs about {gib(need)} GiB, {gib(available())} available", flush=True)
            continue
        print(f"running {case}", file=sys.stderr, flush=True)
        found = measure(case, args.timeout)
        if found is not None:
            results.append((case, found))
    print("\n\n".join(__doc__.split("\n\n")[2:4]))
    print_measured(results)
    print_computed(results)


if __name__ == "__main__":
    main()
