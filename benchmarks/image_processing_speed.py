"""Image preprocessing throughput: BlipImageProcessor (slow) against BlipImageProcessorFast, side by side.

A batch of 64 photos (scikit-image's sample photos, cycled and cropped to
varied sizes with a fixed seed) is preprocessed to the default 384 x 384 by
every variant in one process. Rounds interleave the variants (the order
rotates each round), so that load from other processes hits them alike; each
variant is warmed up first (resampling plans cached, frameworks imported).
Reported: the median and best seconds per batch, images per second, and the
ratio to the slow processor on NumPy input (> 1: faster). The load average
is printed too: on a shared machine, compare the ratios of one run.

    python benchmarks/image_processing_speed.py                  # 5 rounds
    python benchmarks/image_processing_speed.py --rounds 9 --threads 1
    python benchmarks/image_processing_speed.py --transformers   # + transformers' processors, when installed
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image
from machine import print_description  # benchmarks/machine.py, beside this script

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
BATCH = 64


def photos(count: int = BATCH, seed: int = 0) -> list[np.ndarray]:
    """`count` uint8 RGB crops (50% to 100% of each side) of scikit-image's photos, cycled."""
    import skimage.data

    sources = [getattr(skimage.data, name)() for name in PHOTOS] + [skimage.data.stereo_motorcycle()[0]]
    rng = np.random.RandomState(seed)
    batch = []
    for index in range(count):
        image = sources[index % len(sources)]
        height, width = image.shape[:2]
        crop_h, crop_w = int(height * rng.uniform(0.5, 1)), int(width * rng.uniform(0.5, 1))
        top, left = rng.randint(0, height - crop_h + 1), rng.randint(0, width - crop_w + 1)
        batch.append(np.ascontiguousarray(image[top : top + crop_h, left : left + crop_w]))
    return batch


def variants(batch: list[np.ndarray], with_transformers: bool) -> dict[str, Callable[[], Any]]:
    from blip_core import BlipImageProcessor, BlipImageProcessorFast

    slow, fast = BlipImageProcessor(), BlipImageProcessorFast()
    pil = [PIL.Image.fromarray(image) for image in batch]
    runs: dict[str, Callable[[], Any]] = {
        "slow  NumPy -> np": lambda: slow(batch, return_tensors="np"),
        "slow  PIL -> np": lambda: slow(pil, return_tensors="np"),
        "fast  NumPy -> np (NumPy backend)": lambda: fast(batch, return_tensors="np"),
    }
    try:
        import torch

        tensors = [torch.from_numpy(image) for image in batch]
        runs["fast  NumPy -> pt (torch backend)"] = lambda: fast(batch, return_tensors="pt")
        runs["fast  PIL -> pt"] = lambda: fast(pil, return_tensors="pt")
        runs["fast  torch uint8 HWC -> pt"] = lambda: fast(tensors, return_tensors="pt")
    except ImportError:
        pass
    try:
        import tensorflow as tf

        tf_tensors = [tf.convert_to_tensor(image) for image in batch]
        runs["fast  TF uint8 HWC -> tf (TF backend)"] = lambda: fast(tf_tensors, return_tensors="tf")
    except ImportError:
        pass
    if with_transformers:
        runs.update(transformers_variants(batch, pil))
    return runs


def transformers_variants(batch: list[np.ndarray], pil: list) -> dict[str, Callable[[], Any]]:
    try:
        import transformers
    except ImportError:
        print("transformers is not installed: its processors are left out")
        return {}
    runs = {"transformers slow NumPy -> np": lambda: transformers.BlipImageProcessor()(batch, return_tensors="np")}
    try:
        fast = transformers.BlipImageProcessorFast()
        fast(batch[:1], return_tensors="pt")
    except Exception as err:  # noqa: BLE001 (torchvision missing or mismatched: report and go on)
        print(f"transformers' fast processor unavailable: {err}")
        return runs
    runs["transformers fast NumPy -> pt"] = lambda: fast(batch, return_tensors="pt")
    runs["transformers fast PIL -> pt"] = lambda: fast(pil, return_tensors="pt")
    return runs


def measure(runs: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    for run in runs.values():
        run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_index in range(rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return times


def report(times: dict[str, list[float]], threads: int | None) -> dict[str, Any]:
    baseline = statistics.median(times["slow  NumPy -> np"])
    rows = {}
    print(f"batch of {BATCH} photos -> 384 x 384; load average {os.getloadavg()[0]:.2f}; torch threads {threads}")
    print(f"{'variant':42s} {'median s':>9s} {'best s':>8s} {'images/s':>9s} {'x slow':>7s}")
    for name, values in times.items():
        median = statistics.median(values)
        rows[name] = {"median_s": median, "best_s": min(values), "images_per_s": BATCH / median}
        rows[name]["speedup_vs_slow"] = baseline / median
        print(f"{name:42s} {median:9.3f} {min(values):8.3f} {BATCH / median:9.1f} {baseline / median:7.2f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--transformers", action="store_true", help="also time transformers' processors")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    print_description()  # where these figures were measured
    threads = None
    try:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        threads = torch.get_num_threads()
    except ImportError:
        pass
    batch = photos()
    sizes = sorted({image.shape[:2] for image in batch})
    print(f"{len(batch)} images, {len(sizes)} sizes from {min(sizes)} to {max(sizes)}")
    rows = report(measure(variants(batch, args.transformers), args.rounds), threads)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
