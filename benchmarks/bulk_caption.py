"""Bulk captioning throughput (images/s) at base size: a plain pipeline loop, the model alone, the local engine,
and the Ray engine, side by side in one run on the same images.

A random checkpoint with the Hub's base sizes (ViT-B/16 at 384 px, BERT-base decoder) is written once, with the
demo models' tokenizer; `--images` JPEG photos-sized images (500x375) are written to a folder. Every mode
captions every image with exactly `NEW_TOKENS` new tokens (EOS disabled by min_new_tokens), greedy:

- pipeline loop: `pipeline("image-to-text")` called once per image file, as a user's loop does;
- model alone: `generate` on batches of `--batch-size` images decoded and preprocessed beforehand (untimed):
  the compute the engines have to hide their data loading behind;
- local engine: `caption_dataset(folder, out, workers=...)` with the model loaded beforehand (decode and resize
  in worker processes, overlapped with the model);
- ray engine: `caption_dataset(..., engine="ray", ray_actors=2)` on a local Ray started beforehand (each actor
  loads the model: included, like Ray's start-up is not).

    python benchmarks/bulk_caption.py                  # 48 images, batch 8
    python benchmarks/bulk_caption.py --images 16 --skip-ray
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

NEW_TOKENS = 20
DEMO = Path(__file__).resolve().parents[1] / "blip_core" / "data" / "models" / "BlipForConditionalGeneration"


def make_checkpoint(folder: Path) -> None:
    """Base-size random weights, the demo tokenizer, a 384-px image processor."""
    import torch

    from blip_core import BlipConfig
    from blip_torch import BlipForConditionalGeneration

    torch.manual_seed(0)
    BlipForConditionalGeneration(BlipConfig(text_config={"num_attention_heads": 12})).save_pretrained(folder)
    for name in ("special_tokens_map.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy(DEMO / name, folder / name)
    config = json.loads((DEMO / "preprocessor_config.json").read_text())
    config["size"] = {"height": 384, "width": 384}
    (folder / "preprocessor_config.json").write_text(json.dumps(config))


def make_images(folder: Path, count: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for index in range(count):  # smooth gradients plus noise: JPEG sizes and decode costs of photos
        base = np.linspace(0, 255, 500 * 375 * 3).reshape(375, 500, 3) * rng.random(3)
        pixels = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype("uint8")
        Image.fromarray(pixels).save(folder / f"img{index:04d}.jpg", quality=90)


def lengths() -> dict[str, int]:
    return {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS}


def pipeline_loop(checkpoint: Path, images: list[Path]) -> float:
    from blip_core import pipeline

    pipe = pipeline("image-to-text", model=str(checkpoint), framework="pt", dtype="float32")
    pipe(str(images[0]), **lengths())  # warm-up
    start = time.perf_counter()
    for image in images:
        pipe(str(image), **lengths())
    return len(images) / (time.perf_counter() - start)


def model_alone(checkpoint: Path, images: list[Path], batch_size: int) -> float:
    import numpy as np
    import torch

    from blip_core import BlipProcessor
    from blip_torch import BlipForConditionalGeneration

    model = BlipForConditionalGeneration.from_pretrained(checkpoint, torch_dtype=torch.float32)
    processor = BlipProcessor.from_pretrained(checkpoint)
    pixels = np.concatenate([processor(images=[str(p)], return_tensors="np")["pixel_values"] for p in images])
    batches = [torch.from_numpy(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
    with torch.no_grad():
        model.generate(pixel_values=batches[0][:2], **lengths())  # warm-up
        start = time.perf_counter()
        for batch in batches:
            model.generate(pixel_values=batch, **lengths())
    return len(images) / (time.perf_counter() - start)


def local_engine(checkpoint: Path, folder: Path, out: Path, batch_size: int, workers: int) -> float:
    from blip_core.bulk.api import MemoryOutput
    from blip_core.bulk.engine import run_local
    from blip_core.bulk.jobs import CaptionJob
    from blip_core.bulk.sources import open_source

    job = CaptionJob(model=str(checkpoint), batch_size=batch_size, generate=tuple(sorted(lengths().items())))
    runner = job.runner()  # the model loaded beforehand, as for the model-alone figure
    source = open_source(str(folder))
    start = time.perf_counter()
    count = run_local(job, source, MemoryOutput(job, 1000), workers=workers, runner=runner)
    return count / (time.perf_counter() - start)


def ray_engine(checkpoint: Path, folder: Path, out: Path, batch_size: int, actors: int) -> float:
    import ray

    from blip_core.bulk import caption_dataset

    ray.init(num_cpus=actors + 2, include_dashboard=False, log_to_driver=False)
    try:
        start = time.perf_counter()
        summary = caption_dataset(
            str(folder),
            out,
            model=str(checkpoint),
            batch_size=batch_size,
            engine="ray",
            ray_actors=actors,
            framework="pt",
            **lengths(),
        )
        return summary.counts["records"] / (time.perf_counter() - start)
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from machine import print_description  # benchmarks/machine.py: where these figures were measured

    print_description()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, folder = Path(tmp) / "checkpoint", Path(tmp) / "images"
        make_checkpoint(checkpoint)
        make_images(folder, args.images)
        images = sorted(folder.glob("*.jpg"))
        results = {
            "pipeline loop, batch 1": pipeline_loop(checkpoint, images),
            f"model alone, batch {args.batch_size}, pre-decoded": model_alone(checkpoint, images, args.batch_size),
            f"local engine, batch {args.batch_size}, {args.workers} worker(s)": local_engine(
                checkpoint, folder, Path(tmp) / "local", args.batch_size, args.workers
            ),
        }
        if not args.skip_ray:
            name = f"ray engine, batch {args.batch_size}, {args.actors} actors (1 thread each)"
            results[name] = ray_engine(checkpoint, folder, Path(tmp) / "ray", args.batch_size, args.actors)
    alone = results[f"model alone, batch {args.batch_size}, pre-decoded"]
    print(f"{args.images} images of 500x375, base-size captioner, {NEW_TOKENS} new tokens, greedy, float32, PyTorch")
    for name, rate in results.items():
        print(f"{name:<58} {rate:6.2f} img/s   {rate / alone:5.2f}x model alone")


if __name__ == "__main__":
    main()
